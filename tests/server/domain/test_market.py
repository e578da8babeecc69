"""Market snapshots as domain data: content ids, the canonical form, structural checks."""

import datetime as dt

import numpy as np

from pricegrid.server.domain.curves import ValueKind, YieldCurve
from pricegrid.server.domain.market import CashDividend, HestonSet, Limits, Snapshot, Underlying

T0 = dt.datetime(2026, 12, 1, 17, 30, tzinfo=dt.timezone.utc)


def curve(cid="USD-OIS", times=(0.5, 1.0, 2.0), values=(0.03, 0.031, 0.032)):
    return YieldCurve(cid, "USD", "ACT_365F", np.array(times), np.array(values), ValueKind.ZERO_RATE)


def snap(**kw):
    base = dict(name="eod", as_of=T0, valuation_date=T0.date(), curves=(curve(),),
                underlyings=(Underlying("SPX", "USD", spot=100.0, discount_curve="USD-OIS"),),
                heston=(HestonSet("H", "SPX", 0.04, 1.0, 0.04, 0.5, -0.5),))
    base.update(kw)
    return Snapshot(**base)


def test_the_id_is_the_contents_hash():
    a, b = snap(), snap()
    assert a.content_id() == b.content_id() and len(a.content_id()) == 32
    assert snap(as_of=T0 + dt.timedelta(microseconds=1)).content_id() != a.content_id()
    assert snap(curves=(curve(values=(0.03, 0.031, np.nextafter(0.032, 1))),)).content_id() != a.content_id()
    # the same instant in another time zone is the same content
    assert snap(as_of=T0.astimezone(dt.timezone(dt.timedelta(hours=9)))).content_id() == a.content_id()


def test_canonical_round_trip():
    s = snap(underlyings=(Underlying("SPX", "USD", spot=0.1 + 0.2, discount_curve="USD-OIS",
                                     dividends=(CashDividend(1 / 3, 2.5),)),))
    back = Snapshot.from_canonical(s.canonical())
    assert back.canonical_json() == s.canonical_json()
    assert back.underlying("SPX").spot == 0.1 + 0.2 and back.underlying("SPX").dividends[0].time == 1 / 3


def test_a_valid_snapshot_has_no_violations():
    assert snap().validate() == []


def test_violations_name_their_paths():
    bad = snap(
        curves=(curve(), curve(times=(1.0, 0.5, 2.0))),
        underlyings=(Underlying("SPX", "usd", spot=None, discount_curve="NOPE",
                                dividends=(CashDividend(1.0, 1.0), CashDividend(0.5, -1.0))),
                     Underlying("SPX", "USD", futures_price=70.0, discount_curve="USD-OIS", dividend_curve="USD-OIS")),
        heston=(HestonSet("H", "NDX", -0.1, 0.0, 0.04, 0.5, 1.0),),
    )
    fields = {v.field for v in bad.validate()}
    assert {
        "curves[1].id", "curves[1].node_times[1]", "underlyings[0].currency", "underlyings[0].spot",
        "underlyings[0].discount_curve", "underlyings[0].dividends[1].time", "underlyings[0].dividends[1].amount",
        "underlyings[1].id", "underlyings[1].dividends", "heston[0].underlying", "heston[0].parameters.v0",
        "heston[0].parameters.kappa", "heston[0].parameters.rho",
    } <= fields


def test_size_caps():
    limits = Limits(max_nodes=5, max_curves=1)
    s = snap(curves=(curve(), curve("B", times=(1.0, 2.0, 3.0))))
    # two curves (count cap); 2 + 3 nodes over 5 (total cap, named at the largest curve)
    assert [v.field for v in s.check_size(limits)] == ["curves", "curves[1]"]
    assert [v.field for v in s.check_size(Limits(max_curve_nodes=3))] == []
    assert [v.field for v in s.check_size(Limits(max_curve_nodes=2))] == [f"curves[{i}].node_times" for i in (0, 1)]
    assert snap().check_size(Limits()) == []
