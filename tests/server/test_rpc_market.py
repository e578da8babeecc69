"""MarketDataService against a real server: snapshots put, read, listed, deleted, validated;
bad input refused with every field named and nothing stored; a restart keeps them."""

import datetime as dt

import grpc
import numpy as np
import pytest
import QuantLib as ql
from google.protobuf import timestamp_pb2

from pricegrid.server.rpc.errors import MAX_VIOLATIONS
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc
from pricegrid.v1 import pricing_pb2 as pb
from tests.conftest import start_server
from tests.server.richerr import violations

NOW = dt.datetime.now(dt.timezone.utc)


def ts(when: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def snapshot(snapshot_name="eod-test", *, as_of=None, spot=100.0, rates=(0.03, 0.032, 0.035, 0.037), **changes):
    times = [0.25, 1.0, 2.0, 5.0]
    msg = mpb.MarketSnapshot(
        name=snapshot_name, as_of=ts(as_of or NOW - dt.timedelta(hours=1)), description="synthetic test data",
        curves=[mpb.YieldCurve(id="USD-OIS", currency="USD", node_times=times, values=list(rates),
                               value_kind=mpb.CURVE_VALUE_KIND_ZERO_RATE),
                mpb.YieldCurve(id="SPX-DIV", currency="USD", node_times=[1.0, 3.0], values=[0.015, 0.016],
                               value_kind=mpb.CURVE_VALUE_KIND_ZERO_RATE,
                               interpolation=mpb.CURVE_INTERPOLATION_LINEAR_ZERO)],
        underlyings=[mpb.Underlying(id="SPX", currency="USD", spot=spot, discount_curve="USD-OIS",
                                    dividend_curve="SPX-DIV", dividends=[mpb.CashDividend(time=0.5, amount=1.2)]),
                     mpb.Underlying(id="EUA-DEC27", currency="EUR", futures_price=71.3, discount_curve="USD-OIS")],
        heston=[mpb.HestonSet(id="SPX-H", underlying="SPX",
                              parameters=pb.HestonParameters(v0=0.04, kappa=1.5, theta=0.05, sigma=0.6, rho=-0.7))],
    )
    for path, value in changes.items():
        target = msg
        *parents, leaf = path.split(".")
        for p in parents:
            target = getattr(target, p[:-3])[int(p[-2])] if p.endswith("]") else getattr(target, p)
        if isinstance(value, list):
            del getattr(target, leaf)[:]
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return msg


@pytest.fixture(scope="module")
def market(channel):
    return market_pb2_grpc.MarketDataServiceStub(channel)


def test_put_get_list_delete_round_trip(market):
    put = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("round-trip")), timeout=10)
    info = put.info
    assert put.created and len(info.id) == 32 and info.name == "round-trip"
    assert (info.curves, info.underlyings, info.heston) == (2, 2, 1) and info.report.errors == 0
    again = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("round-trip")), timeout=10)
    assert not again.created and again.info.id == info.id  # the content's hash: same content, same id
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=info.id), timeout=10)
    assert got.info.id == info.id
    sent = snapshot("round-trip")
    assert list(got.snapshot.curves[0].values) == list(sent.curves[0].values)
    assert list(got.snapshot.curves[0].node_times) == list(sent.curves[0].node_times)
    assert got.snapshot.underlyings[1].futures_price == 71.3 and got.snapshot.underlyings[0].dividends[0].amount == 1.2
    assert got.snapshot.heston[0].parameters.rho == -0.7
    assert got.snapshot.valuation_date == cpb.Date(year=sent.as_of.ToDatetime().year, month=sent.as_of.ToDatetime().month,
                                                   day=sent.as_of.ToDatetime().day)
    listed = market.ListSnapshots(mpb.ListSnapshotsRequest(name="round-trip"), timeout=10).snapshots
    assert [s.id for s in listed] == [info.id]
    assert market.DeleteSnapshot(mpb.DeleteSnapshotRequest(id=info.id), timeout=10).id == info.id
    with pytest.raises(grpc.RpcError) as e:
        market.GetSnapshot(mpb.GetSnapshotRequest(id=info.id), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        market.DeleteSnapshot(mpb.DeleteSnapshotRequest(id=info.id), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_changed_number_is_another_snapshot(market):
    a = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("ids", spot=100.0)), timeout=10).info.id
    b = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("ids", spot=100.0 + 1e-12)), timeout=10).info.id
    assert a != b


def test_list_is_newest_first_and_capped(market):
    ids = []
    for hours in (5, 3, 4):
        msg = snapshot("listing", as_of=NOW - dt.timedelta(hours=hours))
        ids.append((hours, market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10).info.id))
    listed = market.ListSnapshots(mpb.ListSnapshotsRequest(name="listing"), timeout=10).snapshots
    assert [s.id for s in listed] == [i for _, i in sorted(ids)]
    assert len(market.ListSnapshots(mpb.ListSnapshotsRequest(name="listing", limit=2), timeout=10).snapshots) == 2


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"curves[0].node_times": [0.25, 2.0, 1.0, 5.0]}, "snapshot.curves[0].node_times[2]"),
        ({"curves[0].node_times": [0.25, 1.0, 1.0, 5.0]}, "snapshot.curves[0].node_times[2]"),
        ({"curves[0].node_times": [-0.25, 1.0, 2.0, 5.0]}, "snapshot.curves[0].node_times[0]"),
        ({"curves[0].values": [0.03, float("nan"), 0.035, 0.037]}, "snapshot.curves[0].values[1]"),
        ({"curves[0].values": [0.03, 0.035]}, "snapshot.curves[0].values"),
        ({"curves[0].value_kind": 0}, "snapshot.curves[0].value_kind"),
        ({"curves[0].value_kind": 7}, "snapshot.curves[0].value_kind"),
        ({"curves[0].interpolation": 9}, "snapshot.curves[0].interpolation"),
        ({"curves[1].id": "USD-OIS"}, "snapshot.curves[1].id"),
        ({"curves[0].currency": "usd"}, "snapshot.curves[0].currency"),
        ({"underlyings[0].discount_curve": "EUR-ESTR"}, "snapshot.underlyings[0].discount_curve"),
        ({"underlyings[0].spot": -5.0}, "snapshot.underlyings[0].spot"),
        ({"underlyings[0].spot": float("inf")}, "snapshot.underlyings[0].spot"),
        ({"underlyings[0].dividends[0].amount": float("nan")}, "snapshot.underlyings[0].dividends[0].amount"),
        ({"heston[0].parameters.rho": 1.0}, "snapshot.heston[0].parameters.rho"),
        ({"heston[0].underlying": "NDX"}, "snapshot.heston[0].underlying"),
        ({"name": ""}, "snapshot.name"),
    ],
)
def test_bad_snapshots_name_the_field_and_store_nothing(market, changes, field):
    msg = snapshot("bad-input", **changes)
    before = len(market.ListSnapshots(mpb.ListSnapshotsRequest(name="bad-input"), timeout=10).snapshots)
    for method in (market.PutSnapshot, market.ValidateMarket):
        request = (mpb.PutSnapshotRequest if method is market.PutSnapshot else mpb.ValidateMarketRequest)(snapshot=msg)
        with pytest.raises(grpc.RpcError) as e:
            method(request, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in [f for f, _ in violations(e.value)], (field, violations(e.value))
    assert len(market.ListSnapshots(mpb.ListSnapshotsRequest(name="bad-input"), timeout=10).snapshots) == before
    assert market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("bad-input-then-good")), timeout=10).info.id


def _delta_grid(nodes=(0.9, 0.75, 0.5, 0.25, 0.1), vols=None, name="bad-delta"):
    """snapshot() with a delta grid (forward call deltas, decreasing) on SPX at 0.25 and 1 year."""
    msg = snapshot(name)
    msg.surfaces.add(id="SPX-DELTA", underlying="SPX", expiries=[0.25, 1.0],
                     grid=mpb.VolGrid(axis=mpb.STRIKE_AXIS_DELTA, nodes=list(nodes),
                                      vols=vols or [0.24, 0.21, 0.19, 0.175, 0.17] * 2))
    return msg


@pytest.mark.parametrize(
    "nodes, vols, fields",
    [
        ((0.9, 0.75, 1.0, 0.25, 0.1), None, ["grid.nodes[2]"]),                # outside (0, 1), above the previous
        ((0.9, 0.75, 0.5, 0.25, 0.0), None, ["grid.nodes[4]"]),                # 0: outside (0, 1)
        ((0.9, 0.75, 0.5, 0.25, -0.1), None, ["grid.nodes[4]"]),               # a put delta not turned into a call's
        ((0.9, 0.75, 0.75, 0.25, 0.1), None, ["grid.nodes[2]"]),               # duplicate
        ((0.9, 0.75, float("nan"), 0.25, 0.1), None, ["grid.nodes[2]"]),
        ((0.1, 0.25, 0.5, 0.75, 0.9), None, [f"grid.nodes[{j}]" for j in range(1, 5)]),  # increasing delta
        # 0.5 at 90% vol is ln(K/F) 0.101, above the 0.25 node's 0.061 at 17.5%: the strikes cross
        ((0.9, 0.75, 0.5, 0.25, 0.1), [0.24, 0.21, 0.9, 0.175, 0.17] + [0.24, 0.21, 0.19, 0.175, 0.17],
         ["grid.vols[3]"]),
    ],
)
def test_bad_delta_grids_name_the_field_and_store_nothing(market, nodes, vols, fields):
    good = _delta_grid(name="delta-good")
    reply = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=good), timeout=10)
    assert reply.info.report.errors == 0 and reply.info.surfaces == 1  # the same grid with sound nodes is fine
    msg = _delta_grid(nodes, vols)
    before = len(market.ListSnapshots(mpb.ListSnapshotsRequest(name="bad-delta"), timeout=10).snapshots)
    for method in (market.PutSnapshot, market.ValidateMarket):
        request = (mpb.PutSnapshotRequest if method is market.PutSnapshot else mpb.ValidateMarketRequest)(snapshot=msg)
        with pytest.raises(grpc.RpcError) as e:
            method(request, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        named = [f for f, _ in violations(e.value)]
        assert sorted(set(named)) == sorted(f"snapshot.surfaces[0].{f}" for f in fields), violations(e.value)
    assert len(market.ListSnapshots(mpb.ListSnapshotsRequest(name="bad-delta"), timeout=10).snapshots) == before == 0
    if vols:
        assert "strikes cross" in dict(violations(e.value))["snapshot.surfaces[0].grid.vols[3]"]


def test_every_violation_is_reported_not_only_the_first(market):
    msg = snapshot("many", **{"curves[0].values": [0.03, float("nan"), 0.035, float("inf")], "underlyings[0].spot": -1.0})
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10)
    fields = [f for f, _ in violations(e.value)]
    assert {"snapshot.curves[0].values[1]", "snapshot.curves[0].values[3]", "snapshot.underlyings[0].spot"} <= set(fields)
    assert len(fields) <= MAX_VIOLATIONS


def test_missing_as_of_and_unknown_ids(market):
    msg = snapshot("no-as-of")
    msg.ClearField("as_of")
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e.value)[0][0] == "snapshot.as_of"
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(), timeout=10)
    assert violations(e.value)[0][0] == "snapshot"
    for request in (mpb.GetSnapshotRequest(id=""), mpb.GetSnapshotRequest(id="0" * 32)):
        with pytest.raises(grpc.RpcError) as e:
            market.GetSnapshot(request, timeout=10)
        assert e.value.code() == (grpc.StatusCode.NOT_FOUND if request.id else grpc.StatusCode.INVALID_ARGUMENT)


def test_error_findings_refuse_unless_forced_with_a_reason(market):
    wild = snapshot("gates", rates=(0.03, 0.032, 1.5, 0.037))  # a forward of hundreds of percent
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=wild), timeout=10).report
    assert report.errors >= 1
    bad = [f for f in report.findings if f.severity == mpb.SEVERITY_ERROR]
    assert bad[0].check == "curve.forward_bounds" and bad[0].field.startswith("curves[0].values[")
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=wild), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert violations(e.value)[0][0].startswith("snapshot.curves[0].values[")
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=wild, force=True), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e.value)[0][0] == "reason"
    forced = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=wild, force=True, reason="stress scenario"), timeout=10)
    assert forced.created and forced.info.forced_reason == "stress scenario" and forced.info.report.errors >= 1
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=forced.info.id), timeout=10)
    assert got.info.forced_reason == "stress scenario"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 5000])
def test_a_bad_force_reason_is_reported_with_the_snapshots_violations(market, reason):
    """Every violation at once (docs/validation.md): the reason's with the snapshot's shape
    (read from the message) and with its structure (the domain's checks)."""
    shapeless = snapshot("force-reason")
    shapeless.ClearField("as_of")
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=shapeless, force=True, reason=reason), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in violations(e.value)} == {"reason", "snapshot.as_of"}
    crooked = snapshot("force-reason", **{"curves[0].currency": "usd"})
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=crooked, force=True, reason=reason), timeout=10)
    assert {f for f, _ in violations(e.value)} == {"reason", "snapshot.curves[0].currency"}
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(force=True, reason=reason), timeout=10)
    assert {f for f, _ in violations(e.value)} == {"reason", "snapshot"}


def test_staleness_and_future_as_of(market):
    old = snapshot("stale", as_of=NOW - dt.timedelta(days=30))
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=old), timeout=10).report
    assert [(f.check, f.severity) for f in report.findings if f.check == "staleness"] == [("staleness", mpb.SEVERITY_WARNING)]
    assert market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=old), timeout=10).created  # warnings do not refuse
    future = snapshot("stale", as_of=NOW + dt.timedelta(hours=2))
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=future), timeout=10).report
    assert any(f.check == "staleness" and f.severity == mpb.SEVERITY_ERROR for f in report.findings)


def test_jumps_are_measured_against_the_previous_snapshot_of_the_name(market):
    first = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("jumps", as_of=NOW - dt.timedelta(hours=3))),
                               timeout=10).info.id
    moved = snapshot("jumps", as_of=NOW - dt.timedelta(hours=2), spot=130.0, rates=(0.03, 0.032, 0.035, 0.052))
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=moved), timeout=10).report
    assert report.compared_with == first
    checks = {(f.check, f.field, f.severity) for f in report.findings}
    assert ("jump.spot", "underlyings[0].spot", mpb.SEVERITY_WARNING) in checks
    assert ("jump.curve", "curves[0].values[3]", mpb.SEVERITY_WARNING) in checks
    crash = snapshot("jumps", as_of=NOW - dt.timedelta(hours=2), spot=40.0)
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=crash), timeout=10).report
    assert any(f.check == "jump.spot" and f.severity == mpb.SEVERITY_ERROR for f in report.findings)


def test_a_snapshot_of_the_same_as_of_is_jump_checked_and_compared_with_is_reported(market):
    """The previous snapshot of the name includes one of the same as-of (never the snapshot
    itself); PutSnapshot and GetSnapshot report compared_with as ValidateMarket does."""
    when = NOW - dt.timedelta(hours=4)
    first = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("same-as-of", as_of=when)), timeout=10).info
    assert first.report.compared_with == ""
    again = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("same-as-of", as_of=when)), timeout=10)
    assert not again.created and again.info.report.compared_with == ""  # itself is not its previous
    tripled = snapshot("same-as-of", as_of=when, spot=300.0)
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=tripled), timeout=10).report
    assert report.compared_with == first.id
    assert any(f.check == "jump.spot" and f.severity == mpb.SEVERITY_ERROR for f in report.findings)
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=tripled), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert violations(e.value)[0][0] == "snapshot.underlyings[0].spot"
    forced = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=tripled, force=True, reason="split"), timeout=10).info
    assert forced.report.compared_with == first.id
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=forced.id), timeout=10).info
    assert got.report.compared_with == first.id and got.report.errors == forced.report.errors
    listed = market.ListSnapshots(mpb.ListSnapshotsRequest(name="same-as-of"), timeout=10).snapshots
    assert [(x.id, x.report.compared_with) for x in listed] == [(forced.id, first.id), (first.id, "")]


_VALUATION = dt.date(2026, 1, 2)
_NODES = [dt.date(2026, 7, 3), dt.date(2027, 1, 2), dt.date(2028, 2, 29), dt.date(2031, 1, 31), dt.date(2036, 1, 2)]
_ZEROS = [0.031, 0.0335, 0.036, 0.0352, 0.041]
_QL_DAY_COUNTS = {cpb.DAY_COUNT_ACT_360: ql.Actual360(), cpb.DAY_COUNT_ACT_365F: ql.Actual365Fixed(),
                  cpb.DAY_COUNT_ACT_ACT_ISDA: ql.ActualActual(ql.ActualActual.ISDA),
                  cpb.DAY_COUNT_THIRTY_360: ql.Thirty360(ql.Thirty360.BondBasis)}


def _qd(d: dt.date) -> ql.Date:
    return ql.Date(d.day, d.month, d.year)


def _dated_curve(market, day_count, kind):
    """A curve on _NODES quoted in ``day_count`` (zero rates, linear; or their discount
    factors, log-linear), stored; and QuantLib's curve built in that day count."""
    ql.Settings.instance().evaluationDate = _qd(_VALUATION)
    dc = _QL_DAY_COUNTS[day_count]
    t_dc = [dc.yearFraction(_qd(_VALUATION), _qd(d)) for d in _NODES]
    msg = snapshot("dated-" + str(day_count) + str(kind))
    msg.valuation_date.CopyFrom(cpb.Date(year=_VALUATION.year, month=_VALUATION.month, day=_VALUATION.day))
    curve = msg.curves[0]
    del curve.node_times[:], curve.values[:]
    curve.node_dates.extend([cpb.Date(year=d.year, month=d.month, day=d.day) for d in _NODES])
    curve.day_count = day_count
    dates = [_qd(_VALUATION)] + [_qd(d) for d in _NODES]
    if kind == mpb.CURVE_VALUE_KIND_ZERO_RATE:
        curve.values.extend(_ZEROS)
        curve.interpolation = mpb.CURVE_INTERPOLATION_LINEAR_ZERO
        ref = ql.ZeroCurve(dates, [_ZEROS[0]] + _ZEROS, dc, ql.NullCalendar(), ql.Linear(), ql.Continuous)
    else:
        dfs = [float(np.exp(-z * t)) for z, t in zip(_ZEROS, t_dc)]
        curve.values.extend(dfs)
        curve.interpolation = mpb.CURVE_INTERPOLATION_LOG_LINEAR_DISCOUNT
        ref = ql.DiscountCurve(dates, [1.0] + dfs, dc, ql.NullCalendar(), ql.LogLinear())
    curve.value_kind = kind
    ref.enableExtrapolation()
    info = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10).info
    return info.id, ref


def _on_axis(market, snapshot_id, dates):
    times = [(d - _VALUATION).days / 365.0 for d in dates]
    got = market.EvaluateCurve(mpb.EvaluateCurveRequest(snapshot_id=snapshot_id, curve_id="USD-OIS", times=times),
                               timeout=10)
    return np.array(got.discount_factors), np.array(got.zero_rates), times


@pytest.mark.parametrize("kind", [mpb.CURVE_VALUE_KIND_ZERO_RATE, mpb.CURVE_VALUE_KIND_DISCOUNT_FACTOR])
@pytest.mark.parametrize("day_count", [cpb.DAY_COUNT_ACT_360, cpb.DAY_COUNT_ACT_365F])
def test_node_dates_go_on_the_snapshots_axis_as_quantlibs_curve_in_the_day_count(market, day_count, kind):
    """ACT/360 and ACT/365F: a linear change of time leaves linear zero rates and log-linear
    discount factors (and the flat-forward extrapolation) the same curve, so the stored curve
    is QuantLib's ZeroCurve / DiscountCurve in the day count at and between nodes and beyond."""
    snapshot_id, ref = _dated_curve(market, day_count, kind)
    dates = [_VALUATION + dt.timedelta(days=n) for n in range(1, 365 * 13, 17)] + _NODES
    df, zero, times = _on_axis(market, snapshot_id, dates)
    want = np.array([ref.discount(_qd(d)) for d in dates])
    np.testing.assert_allclose(df, want, rtol=1e-12, atol=0)
    want_zero = [ref.zeroRate(_qd(d), ql.Actual365Fixed(), ql.Continuous).rate() for d in dates]
    np.testing.assert_allclose(zero, want_zero, rtol=0, atol=1e-12)
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=snapshot_id), timeout=10).snapshot.curves[0]
    assert list(got.node_times) == [(d - _VALUATION).days / 365.0 for d in _NODES] and not got.node_dates
    assert got.day_count == day_count  # how the dates were quoted; node_times are on the axis


@pytest.mark.parametrize("kind", [mpb.CURVE_VALUE_KIND_ZERO_RATE, mpb.CURVE_VALUE_KIND_DISCOUNT_FACTOR])
@pytest.mark.parametrize("day_count", [cpb.DAY_COUNT_ACT_ACT_ISDA, cpb.DAY_COUNT_THIRTY_360])
def test_node_dates_of_other_day_counts_keep_each_nodes_discount_factor(market, day_count, kind):
    """ACT/ACT ISDA and 30/360 are not a linear change of time: exact at the nodes (the
    proto's promise), interpolated on the axis between them."""
    snapshot_id, ref = _dated_curve(market, day_count, kind)
    df, _, _ = _on_axis(market, snapshot_id, _NODES)
    np.testing.assert_allclose(df, [ref.discount(_qd(d)) for d in _NODES], rtol=1e-13, atol=0)


def test_node_dates_on_or_before_the_valuation_date_are_refused(market):
    msg = snapshot("dates")
    msg.valuation_date.CopyFrom(cpb.Date(year=2026, month=1, day=2))
    curve = msg.curves[0]
    del curve.node_times[:]
    curve.node_dates.extend([cpb.Date(year=2026, month=1, day=2), cpb.Date(year=2027, month=1, day=2),
                             cpb.Date(year=2028, month=1, day=2), cpb.Date(year=2031, month=1, day=2)])
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10)
    assert violations(e.value)[0][0] == "snapshot.curves[0].node_dates[0]"
    del curve.node_dates[0]
    curve.node_dates.append(cpb.Date(year=2032, month=1, day=2))
    curve.node_times.append(1.0)
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10)
    assert violations(e.value)[0][0] == "snapshot.curves[0].node_dates"


def test_a_snapshot_over_the_size_cap_is_resource_exhausted(market, channel):
    big = snapshot("big")
    n = 2_000_001
    big.curves[0].ClearField("node_times")
    big.curves[0].ClearField("values")
    big.curves[0].node_times.extend(np.arange(1, n + 1) / 365.0)
    big.curves[0].values.extend(np.full(n, 0.03))
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=big), timeout=60)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("after-big")), timeout=10).created


def test_a_restart_keeps_the_snapshots(tmp_path):
    path = tmp_path / "store" / "pricegrid.db"
    first = start_server(store=str(path), metrics_port=-1)
    try:
        with grpc.insecure_channel(first.address) as ch:
            stub = market_pb2_grpc.MarketDataServiceStub(ch)
            snapshot_id = stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("kept")), timeout=10).info.id
    finally:
        first.stop(1.0)
    second = start_server(store=str(path), metrics_port=-1)
    try:
        with grpc.insecure_channel(second.address) as ch:
            stub = market_pb2_grpc.MarketDataServiceStub(ch)
            got = stub.GetSnapshot(mpb.GetSnapshotRequest(id=snapshot_id), timeout=10)
            assert got.info.name == "kept" and list(got.snapshot.curves[0].values) == [0.03, 0.032, 0.035, 0.037]
    finally:
        second.stop(1.0)


def test_the_demo_snapshot_is_there_out_of_the_box(market):
    listed = market.ListSnapshots(mpb.ListSnapshotsRequest(name="demo"), timeout=10).snapshots
    assert len(listed) == 1 and "SYNTHETIC" in listed[0].description
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=listed[0].id), timeout=10).snapshot
    assert {c.id for c in got.curves} == {"USD-OIS", "EUR-ESTR", "SPX-DIV"}
    assert {u.id for u in got.underlyings} == {"SPX", "EUA-DEC27", "EUA-DEC28"}
    assert listed[0].report.errors == 0
