"""MarketDataService at its edges, against a real server: surfaces past the kernels' bounds,
timestamps past the Timestamp range, dividends that are not future cash flows, snapshots that
can never price, over-long ids, the fields EvaluateCurve / EvaluateSurface name. Every refusal
has its code and names the field as the caller wrote it; nothing is stored; the server keeps
serving; nothing is INTERNAL."""

import datetime as dt

import grpc
import numpy as np
import pytest

from pricegrid.server.domain.surfaces import BOUNDS
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc
from tests.server.richerr import violations
from tests.server.test_rpc_market import snapshot


@pytest.fixture(scope="module")
def market(channel):
    return market_pb2_grpc.MarketDataServiceStub(channel)


def stored(market, name):
    return len(market.ListSnapshots(mpb.ListSnapshotsRequest(name=name), timeout=10).snapshots)


def refused(market, msg, code=grpc.StatusCode.INVALID_ARGUMENT):
    """The violations of PutSnapshot and ValidateMarket (the same), after checking that both
    fail with ``code``, that nothing is stored and that the server still stores a good one."""
    before = stored(market, msg.name)
    found = []
    for request in (mpb.PutSnapshotRequest(snapshot=msg), mpb.ValidateMarketRequest(snapshot=msg)):
        method = market.PutSnapshot if isinstance(request, mpb.PutSnapshotRequest) else market.ValidateMarket
        with pytest.raises(grpc.RpcError) as e:
            method(request, timeout=30)
        assert e.value.code() == code, e.value.details()
        found.append(violations(e.value))
    assert found[0] == found[1]
    assert stored(market, msg.name) == before
    assert market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot("edges-good")), timeout=10).info.id
    return found[0]


def with_surface(name, surface: dict, link=True):
    msg = snapshot(name)
    msg.surfaces.add(**surface)
    if link:
        msg.underlyings[0].vol_surface = surface["id"]
    return msg


def grid(axis, nodes, vols, expiries=(0.5,), underlying="SPX", surface_id="X"):
    return dict(id=surface_id, underlying=underlying, expiries=list(expiries),
                grid=mpb.VolGrid(axis=axis, nodes=list(nodes), vols=list(vols)))


def sabr(alpha, beta, rho, nu, expiries=(0.5,)):
    return dict(id="X", underlying="SPX", expiries=list(expiries),
                sabr=mpb.SabrSlices(slices=[mpb.SabrSlice(alpha=alpha, beta=beta, rho=rho, nu=nu)]))


def svi(a, b, rho, m, sigma, expiries=(0.5,)):
    return dict(id="X", underlying="SPX", expiries=list(expiries),
                svi=mpb.SviSlices(slices=[mpb.SviSlice(a=a, b=b, rho=rho, m=m, sigma=sigma)]))


LOG, STRIKE = mpb.STRIKE_AXIS_LOG_MONEYNESS, mpb.STRIKE_AXIS_STRIKE


# ------------------------------------------------------------------ surfaces the kernels cannot evaluate
@pytest.mark.parametrize("surface, fields", [
    (grid(LOG, [-800, 0, 800], [0.2] * 3), ["grid.nodes[0]", "grid.nodes[2]"]),       # e^800 overflows
    (grid(STRIKE, [90, 100, 110], [0.2] * 3, expiries=[1e5]), ["expiries[0]"]),        # its forward overflows
    (sabr(1e200, 0.5, 0.0, 0.4), ["sabr.slices[0].alpha"]),
    (sabr(0.2, 0.5, 0.0, 1e200), ["sabr.slices[0].nu"]),
    (sabr(1e-300, 0.5, 0.0, 0.4), ["sabr.slices[0].alpha"]),                         # its vols underflow
    (sabr(0.2, 0.5, 0.0, 0.4, expiries=[1e300]), ["expiries[0]"]),
    (svi(0.04, 0.1, -0.5, 1e300, 0.1), ["svi.slices[0].m"]),
    (svi(0.04, 0.1, -0.5, 0.0, 1e300), ["svi.slices[0].sigma"]),                     # sigma^2 overflows
    (svi(0.04, 0.1, -0.5, 0.0, 1e-300), ["svi.slices[0].sigma"]),                    # sigma^2 underflows
    (svi(0.04, 0.1, 0.0, 0.0, 0.1, expiries=[1e-300]), ["svi.slices[0].a"]),        # vols of 1e149 and more
    (grid(mpb.STRIKE_AXIS_MONEYNESS, [0.9, 1.0, 1.1], [0.2, 1e150, 1e-300]), ["grid.vols[1]", "grid.vols[2]"]),
])
def test_surfaces_outside_the_kernels_bounds_are_refused_naming_the_field(market, surface, fields):
    found = refused(market, with_surface("edges-surface", surface))
    assert [f for f, _ in found] == [f"snapshot.surfaces[0].{f}" for f in fields]
    assert all("is outside [" in text or "is above" in text for _, text in found)


def test_surfaces_at_the_bounds_are_checked_not_refused(market):
    k = BOUNDS.max_log_moneyness
    edge = [grid(LOG, [-k, 0.0, k], [0.2] * 6, expiries=[0.5, BOUNDS.max_expiry]),
            sabr(BOUNDS.sabr_alpha[1], 0.0, 0.0, BOUNDS.sabr_nu, expiries=[BOUNDS.max_expiry]),
            svi(0.04, 0.1, -0.5, k, BOUNDS.svi_sigma[0]), svi(0.04, 0.1, -0.5, -k, BOUNDS.svi_sigma[1])]
    for surface in edge:
        report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=with_surface("edges-bound", surface)),
                                       timeout=30).report
        assert not [f for f in report.findings if f.check == "surface.evaluable"], report


def test_a_surface_the_checks_cannot_evaluate_is_an_error_finding_not_internal(market):
    """Inside the bounds, a strike grid at 100 years on a curve of 1000% rates: its forward
    overflows. A finding naming the surface, never INTERNAL."""
    msg = with_surface("edges-forward", grid(STRIKE, [90, 100, 110], [0.2] * 3, expiries=[100.0]))
    del msg.curves[0].values[:]
    msg.curves[0].values.extend([10.0] * 4)
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=msg), timeout=30).report
    found = [f for f in report.findings if f.check == "surface.evaluable"]
    assert [(f.severity, f.field) for f in found] == [(mpb.SEVERITY_ERROR, "surfaces[0]")]
    assert "forward" in found[0].message


# ------------------------------------------------------------------ as_of outside the Timestamp range
@pytest.mark.parametrize("seconds, nanos", [(253_402_300_800, 0), (10**15, 0), (-10**15, 0),
                                            (1_700_000_000, -5), (1_700_000_000, 2_000_000_000)])
def test_an_as_of_outside_the_timestamp_range_is_invalid_argument(market, seconds, nanos):
    msg = snapshot("edges-as-of")
    msg.as_of.seconds, msg.as_of.nanos = seconds, nanos
    assert [f for f, _ in refused(market, msg)] == ["snapshot.as_of"]


# ------------------------------------------------------------------ dividends that are not future cash flows
def _dividend(msg, **fields):
    del msg.underlyings[0].dividends[:]
    msg.underlyings[0].dividends.add(**fields)
    return msg


@pytest.mark.parametrize("fields, path", [
    ({"time": 0.0, "amount": 5.0}, "time"),
    ({"amount": 100.0}, "time"),                                            # neither time nor date: time 0
    ({"date": cpb.Date(year=2020, month=1, day=2), "amount": 5.0}, "date"),  # before the valuation date
    ({"date": "valuation", "amount": 5.0}, "date"),                          # on it
])
def test_a_dividend_on_or_before_the_valuation_date_is_refused(market, fields, path):
    msg = snapshot("edges-dividend")
    msg.valuation_date.CopyFrom(cpb.Date(year=2026, month=3, day=2))
    if fields.get("date") == "valuation":
        fields = dict(fields, date=msg.valuation_date)
    found = refused(market, _dividend(msg, **fields))
    assert [f for f, _ in found] == [f"snapshot.underlyings[0].dividends[0].{path}"]
    assert "not a future cash flow" in found[0][1]


def test_node_dates_before_the_valuation_date_name_node_dates(market):
    msg = snapshot("edges-nodes")
    msg.valuation_date.CopyFrom(cpb.Date(year=2026, month=3, day=2))
    del msg.curves[0].node_times[:]
    msg.curves[0].node_dates.extend([cpb.Date(year=2020, month=1, day=2), cpb.Date(year=2026, month=3, day=2),
                                     cpb.Date(year=2027, month=3, day=2), cpb.Date(year=2028, month=3, day=2)])
    assert [f for f, _ in refused(market, msg)] == ["snapshot.curves[0].node_dates[0]",
                                                    "snapshot.curves[0].node_dates[1]"]


# ------------------------------------------------------------------ snapshots that can never price
def _report(market, msg):
    return market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=msg), timeout=30).report


def test_dividends_worth_the_spot_are_an_error(market):
    msg = _dividend(snapshot("edges-rich"), time=0.25, amount=99.0)
    assert not [f for f in _report(market, msg).findings if f.check == "underlying.dividends"]  # PV < 100
    msg = _dividend(snapshot("edges-rich"), time=0.25, amount=101.0)
    found = [f for f in _report(market, msg).findings if f.check == "underlying.dividends"]
    assert [(f.severity, f.field) for f in found] == [(mpb.SEVERITY_ERROR, "underlyings[0].dividends")]
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "snapshot.underlyings[0].dividends" in [f for f, _ in violations(e.value)]


def test_a_surface_of_another_underlying_is_an_error_and_a_foreign_curve_a_warning(market):
    msg = with_surface("edges-other", grid(mpb.STRIKE_AXIS_MONEYNESS, [0.9, 1.0, 1.1], [0.2] * 3), link=False)
    msg.underlyings[1].vol_surface = "X"  # EUA-DEC27 linked to SPX's surface
    checks = {(f.check, f.field, f.severity) for f in _report(market, msg).findings}
    assert ("underlying.vol_surface", "underlyings[1].vol_surface", mpb.SEVERITY_ERROR) in checks
    # EUA-DEC27 is in EUR, discounted on USD-OIS; SPX (USD) on USD-OIS is not reported
    assert ("underlying.currency", "underlyings[1].discount_curve", mpb.SEVERITY_WARNING) in checks
    assert not [c for c in checks if c[0] == "underlying.currency" and c[1].startswith("underlyings[0]")]
    msg.underlyings[1].vol_surface = ""
    assert not [f for f in _report(market, msg).findings if f.check == "underlying.vol_surface"]


# ------------------------------------------------------------------ the butterfly check's tolerance
def test_a_flat_dense_grid_has_no_butterfly_and_a_bump_on_it_has(market):
    nodes = np.linspace(-2, 2, 1990)
    flat = with_surface("edges-flat", grid(LOG, nodes, [0.2] * nodes.size, expiries=[1.46]))
    assert not [f for f in _report(market, flat).findings if f.check.startswith("surface.")]
    vols = np.full(nodes.size, 0.2)
    vols[995] += 1e-4  # a 1 bp vol spike makes the call at node 995 dearer than its neighbours allow
    bumped = with_surface("edges-flat", grid(LOG, nodes, vols, expiries=[1.46]))
    found = [f for f in _report(market, bumped).findings if f.check == "surface.butterfly"]
    assert [f.field for f in found] == ["surfaces[0].expiries[0]"] and f"{nodes[995]:g}" in found[0].message


# ------------------------------------------------------------------ ids
@pytest.mark.parametrize("where", ["curve", "surface"])
def test_ids_longer_than_the_text_cap_are_refused(market, where):
    long = "c" * 257
    if where == "curve":
        msg = snapshot("edges-id")
        msg.curves[1].id = long
        msg.underlyings[0].dividend_curve = long
        path = "snapshot.curves[1].id"
    else:
        msg = with_surface("edges-id", dict(grid(mpb.STRIKE_AXIS_MONEYNESS, [1.0], [0.2]), id=long))
        path = "snapshot.surfaces[0].id"
    found = refused(market, msg)
    assert [f for f, _ in found] == [path] and "at most 256" in found[0][1]


# ------------------------------------------------------------------ EvaluateCurve / EvaluateSurface fields
def test_evaluate_names_the_request_fields(market):
    msg = with_surface("edges-evaluate", grid(mpb.STRIKE_AXIS_MONEYNESS, [0.9, 1.0, 1.1], [0.2] * 3))
    sid = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg), timeout=10).info.id
    cases = [
        (mpb.EvaluateCurveRequest(snapshot_id="0" * 32, curve_id="USD-OIS", times=[1.0]), "snapshot_id",
         grpc.StatusCode.NOT_FOUND),
        (mpb.EvaluateCurveRequest(snapshot_id=sid, curve_id="", times=[1.0]), "curve_id",
         grpc.StatusCode.INVALID_ARGUMENT),
        (mpb.EvaluateSurfaceRequest(snapshot_id="0" * 32, surface_id="X", expiries=[0.5], strikes=[100.0]),
         "snapshot_id", grpc.StatusCode.NOT_FOUND),
        (mpb.EvaluateSurfaceRequest(snapshot_id=sid, surface_id="", expiries=[0.5], strikes=[100.0]), "surface_id",
         grpc.StatusCode.INVALID_ARGUMENT),
        (mpb.EvaluateSurfaceRequest(snapshot_id=sid, surface_id="X", expiries=[0.5], strikes=[100.0],
                                    forwards=[float("nan")]), "forwards[0]", grpc.StatusCode.INVALID_ARGUMENT),
        (mpb.EvaluateSurfaceRequest(snapshot_id=sid, surface_id="X", expiries=[0.5, 0.5], strikes=[100.0, -1.0]),
         "strikes[1]", grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, path, code in cases:
        method = market.EvaluateCurve if isinstance(request, mpb.EvaluateCurveRequest) else market.EvaluateSurface
        with pytest.raises(grpc.RpcError) as e:
            method(request, timeout=10)
        assert e.value.code() == code and [f for f, _ in violations(e.value)] == [path], (path, e.value.details())
        assert e.value.details().startswith(f"{path}: ")
    ok = market.EvaluateSurface(mpb.EvaluateSurfaceRequest(snapshot_id=sid, surface_id="X", expiries=[0.5],
                                                           strikes=[100.0]), timeout=10)
    assert ok.vols[0] == 0.2


# ------------------------------------------------------------------ size caps
def _curve_of(n):
    msg = snapshot("edges-size")
    del msg.curves[0].node_times[:], msg.curves[0].values[:]
    msg.curves[0].node_times.extend(np.arange(1, n + 1) / 365.0)
    msg.curves[0].values.extend(np.full(n, 0.03))
    return msg


@pytest.mark.parametrize("build, field", [
    (lambda: _curve_of(100_001), "snapshot.curves[0].node_times"),
    (lambda: with_surface("edges-size", dict(svi(0.04, 0.1, -0.5, 0.0, 0.1, expiries=np.arange(1, 10_002) / 1e3),
                                             svi=mpb.SviSlices(slices=[mpb.SviSlice(a=0.04, b=0.1, rho=-0.5,
                                                                                    sigma=0.1)] * 10_001))),
     "snapshot.surfaces[0].expiries"),
    (lambda: with_surface("edges-size", grid(LOG, np.linspace(-2, 2, 10_001), [0.2] * 10_001)), "snapshot.surfaces[0].grid.nodes"),
    (lambda: with_surface("edges-size", grid(LOG, np.linspace(-2, 2, 2001), [0.2] * 2_001_000,
                                             expiries=np.arange(1, 1001) / 100)), "snapshot.surfaces[0]"),
])
def test_sizes_over_the_caps_are_resource_exhausted_where_they_are(market, build, field):
    found = refused(market, build(), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert [f for f, _ in found] == [field] and "at most" in found[0][1]


# ------------------------------------------------------------------ bounded reports and reasons
def test_a_force_reason_past_its_cap_is_refused(market):
    msg = snapshot("edges-reason", as_of=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))  # an error
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg, force=True, reason="r" * 1025), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and [f for f, _ in violations(e.value)] == ["reason"]
    assert stored(market, "edges-reason") == 0
    forced = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg, force=True, reason="r" * 1024), timeout=10)
    assert forced.info.forced_reason == "r" * 1024


def test_findings_are_capped_per_check_and_listings_carry_counts_only(market):
    n = 300  # each slice's right wing, b (1 + rho) = 2.25, is steeper than Lee's 2: 300 lee_wing warnings
    msg = with_surface("edges-findings", dict(
        svi(0.04, 1.5, 0.5, 0.0, 0.1, expiries=np.arange(1, n + 1) / 100),
        svi=mpb.SviSlices(slices=[mpb.SviSlice(a=0.04, b=1.5, rho=0.5, sigma=0.1)] * n)))
    report = _report(market, msg)
    lee = [f for f in report.findings if f.check == "surface.lee_wing"]
    assert len(lee) == 101 and "and 200 more surface.lee_wing findings" in lee[-1].message
    assert all(f.severity == mpb.SEVERITY_WARNING for f in lee) and lee[-1].field == "surfaces[0].expiries[100]"
    counted = {c: sum(f.check == c for f in report.findings) for c in {f.check for f in report.findings}}
    assert max(counted.values()) <= 101
    assert report.errors == sum(f.severity == mpb.SEVERITY_ERROR for f in report.findings)
    put = market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=msg, force=True, reason="wide"), timeout=30).info
    assert [f.message for f in put.report.findings] == [f.message for f in report.findings]
    listed = market.ListSnapshots(mpb.ListSnapshotsRequest(name="edges-findings"), timeout=10).snapshots
    assert [s.id for s in listed] == [put.id] and not listed[0].report.findings
    assert (listed[0].report.errors, listed[0].report.warnings) == (put.report.errors, put.report.warnings)
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=put.id), timeout=10).info.report
    assert len(got.findings) == len(put.report.findings)
