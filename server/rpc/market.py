"""MarketDataService: snapshots in and out (proto <-> domain) and its servicer.

Reading a snapshot names every field as the caller wrote it (``snapshot.curves[1].values``);
enum values the contract does not know are refused, unset ones take the documented
defaults (day count ACT/365F, interpolation log-linear on discount factors). A snapshot has
one time axis, years ACT/365F from its valuation date: node, dividend and expiry dates are
placed on it (a curve's node keeps its discount factor, its zero rate quoted in the curve's
day count becomes the rate on the axis: domain.curves.axis_nodes); the server keeps and
returns times on the axis.
"""

from __future__ import annotations

import datetime as dt

import grpc
import numpy as np

from pricegrid.server.domain import daycount
from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve, axis_nodes
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid
from pricegrid.server.domain.market import CashDividend, HestonSet, Snapshot, StoredSnapshot, Underlying
from pricegrid.server.domain.surfaces import GridSurface, SabrSurface, StrikeAxis, SviSurface
from pricegrid.server.rpc.admission import Lane
from pricegrid.server.rpc.interceptors import safe_deserializer, wrap_unary
from pricegrid.server.rpc.requests import unknown_enums
from pricegrid.server.rpc.observe import RpcObserver
from pricegrid.server.service.market import MarketDataService, check_reason, severity_counts
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import pricing_pb2 as pb

SERVICE = "pricegrid.v1.MarketDataService"

_VALUE_KINDS = {1: ValueKind.ZERO_RATE, 2: ValueKind.DISCOUNT_FACTOR}
_INTERPOLATIONS = {0: Interpolation.LOG_LINEAR_DISCOUNT, **{int(i): i for i in Interpolation}}
_DAY_COUNTS = {0: daycount.DayCount.ACT_365F, **{int(d): d for d in daycount.DayCount}}


# ------------------------------------------------------------------ proto -> domain
def _date(d: cpb.Date, path: str) -> dt.date:
    return daycount.make_date(d.year, d.month, d.day, path)


def _years(valuation: dt.date, d: cpb.Date, dc, path: str) -> float:
    day = daycount.to_days(_date(d, path))
    return float(daycount.year_fractions(daycount.to_days(valuation), np.array([day]), dc)[0])


def _text(d: cpb.Date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _curve(msg: mpb.YieldCurve, valuation: dt.date, path: str) -> YieldCurve:
    if msg.value_kind not in _VALUE_KINDS:
        what = "required" if msg.value_kind == 0 else f"unknown CurveValueKind value {msg.value_kind}"
        raise invalid(f"{path}.value_kind", f"{what}: CURVE_VALUE_KIND_ZERO_RATE or CURVE_VALUE_KIND_DISCOUNT_FACTOR")
    if msg.interpolation not in _INTERPOLATIONS:
        raise invalid(f"{path}.interpolation", f"unknown CurveInterpolation value {msg.interpolation}")
    dc = _DAY_COUNTS.get(msg.day_count)
    if dc is None:
        raise invalid(f"{path}.day_count", f"unknown DayCount value {msg.day_count}")
    if len(msg.node_times) and len(msg.node_dates):
        raise invalid(f"{path}.node_dates", "set node_times or node_dates, not both")
    values = np.array(msg.values, dtype=np.float64)
    if len(msg.node_dates):
        days = np.array([daycount.to_days(_date(d, f"{path}.node_dates[{i}]")) for i, d in enumerate(msg.node_dates)],
                        dtype=np.int64)
        times, values, t_dc = axis_nodes(daycount.to_days(valuation), days, values, _VALUE_KINDS[msg.value_kind], dc)
        past = [FieldViolation(f"{path}.node_dates[{i}]", f"{_text(d)} is not after the valuation date {valuation}"
                                                          f" (a node is a time > 0 from it, {dc.name} and ACT_365F)")
                for i, (d, t, u) in enumerate(zip(msg.node_dates, times, t_dc)) if not (t > 0.0 and u > 0.0)]
        if past:
            raise ServiceError(Code.INVALID_ARGUMENT, "; ".join(f"{v.field}: {v.description}" for v in past[:5]), past)
    else:
        times = np.array(msg.node_times, dtype=np.float64)
    return YieldCurve(msg.id, msg.currency, dc.name, times, values, _VALUE_KINDS[msg.value_kind],
                      _INTERPOLATIONS[msg.interpolation])


def _underlying(msg: mpb.Underlying, valuation: dt.date, path: str) -> Underlying:
    dividends = []
    for j, d in enumerate(msg.dividends):
        dpath = f"{path}.dividends[{j}]"
        if d.HasField("date") and d.time:
            raise invalid(f"{dpath}.date", "set time or date, not both")
        t = _years(valuation, d.date, daycount.DayCount.ACT_365F, f"{dpath}.date") if d.HasField("date") else d.time
        if d.HasField("date") and not t > 0.0:
            raise invalid(f"{dpath}.date", f"{_text(d.date)} is not after the valuation date {valuation}: a dividend"
                                           " going ex on or before it is not a future cash flow (leave it out)")
        dividends.append(CashDividend(t, d.amount))
    level = msg.WhichOneof("level")
    return Underlying(
        msg.id, msg.currency, msg.spot if level == "spot" else None,
        msg.futures_price if level == "futures_price" else None, msg.discount_curve, msg.dividend_curve,
        tuple(dividends), msg.vol_surface,
    )


_AXES = {int(a): a for a in StrikeAxis}  # STRIKE_AXIS_<name> = StrikeAxis.<name> (tests/contract/test_mirrors.py)
_SVI = ("a", "b", "rho", "m", "sigma")
_SABR = ("alpha", "beta", "rho", "nu")


def _surface(msg: mpb.VolSurface, valuation: dt.date, path: str):
    if len(msg.expiries) and len(msg.expiry_dates):
        raise invalid(f"{path}.expiry_dates", "set expiries or expiry_dates, not both")
    if len(msg.expiry_dates):
        t = [_years(valuation, d, daycount.DayCount.ACT_365F, f"{path}.expiry_dates[{i}]")
             for i, d in enumerate(msg.expiry_dates)]
    else:
        t = list(msg.expiries)
    t = np.array(t, dtype=np.float64)
    kind = msg.WhichOneof("slices")
    if kind is None:
        raise invalid(f"{path}.slices", "required: set grid, svi or sabr")
    if kind == "grid":
        g = msg.grid
        if g.axis not in _AXES:
            what = "required" if g.axis == 0 else f"unknown StrikeAxis value {g.axis}"
            raise invalid(f"{path}.grid.axis", what)
        nodes = np.array(g.nodes, dtype=np.float64)
        if len(g.vols) != len(t) * len(nodes):
            raise invalid(f"{path}.grid.vols", f"{len(g.vols)} vols for {len(t)} expiries x {len(nodes)} nodes"
                                               " (row-major: one row per expiry)")
        vols = np.array(g.vols, dtype=np.float64).reshape(len(t), len(nodes))
        return GridSurface(msg.id, msg.underlying, t, _AXES[g.axis], nodes, vols)
    names, cls = (_SVI, SviSurface) if kind == "svi" else (_SABR, SabrSurface)
    params = np.array([[getattr(x, n) for n in names] for x in getattr(msg, kind).slices], dtype=np.float64)
    return cls(msg.id, msg.underlying, t, params.reshape(-1, len(names)))


#: a Timestamp's range (google/protobuf/timestamp.proto): 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def _as_of(ts, path: str, bad: Violations):
    """The as-of time, or None with the violation recorded: seconds and nanos inside the
    Timestamp's documented range (ToDatetime raises ValueError or OverflowError outside it)."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS:
        bad.add(path, f"seconds {ts.seconds} is outside 0001-01-01 to 9999-12-31 (the Timestamp range)")
    elif not 0 <= ts.nanos <= 999_999_999:
        bad.add(path, f"nanos {ts.nanos} is outside [0, 999999999]")
    else:
        return ts.ToDatetime(tzinfo=dt.timezone.utc)
    return None


def snapshot_of(msg: mpb.MarketSnapshot, path: str = "snapshot") -> Snapshot:
    """The domain snapshot of a message (its values are checked later, by the service's
    quality gates). Every violation of its shape is reported at once: each curve,
    underlying, parameter set and surface is read, and enum values the contract does not
    know are refused anywhere in it."""
    bad = Violations()
    as_of = valuation = None
    if not msg.HasField("as_of"):
        bad.add(f"{path}.as_of", "required: when the market was observed")
    else:
        as_of = _as_of(msg.as_of, f"{path}.as_of", bad)
    if msg.HasField("valuation_date"):
        with bad.check():
            valuation = _date(msg.valuation_date, f"{path}.valuation_date")
    elif as_of is not None:
        valuation = as_of.date()
    valuation = valuation or dt.date(1970, 1, 1)  # (only read when the snapshot is refused anyway)

    def each(items, read, name):
        out = []
        for i, x in enumerate(items):
            with bad.check():
                out.append(read(x, valuation, f"{path}.{name}[{i}]"))
        return tuple(out)

    curves = each(msg.curves, _curve, "curves")
    underlyings = each(msg.underlyings, _underlying, "underlyings")
    heston = []
    for i, h in enumerate(msg.heston):
        if not h.HasField("parameters"):
            bad.add(f"{path}.heston[{i}].parameters", "required")
            continue
        p = h.parameters
        heston.append(HestonSet(h.id, h.underlying, p.v0, p.kappa, p.theta, p.sigma, p.rho))
    surfaces = each(msg.surfaces, _surface, "surfaces")
    unknown_enums(msg, f"{path}.", bad)
    bad.raise_if_any()
    return Snapshot(msg.name, as_of, valuation, curves, underlyings, tuple(heston), msg.description, surfaces)


# ------------------------------------------------------------------ domain -> proto
def _timestamp(when: dt.datetime):
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when.astimezone(dt.timezone.utc))
    return ts


def snapshot_message(s: Snapshot) -> mpb.MarketSnapshot:
    v = s.valuation_date
    msg = mpb.MarketSnapshot(name=s.name, as_of=_timestamp(s.as_of), description=s.description,
                             valuation_date=cpb.Date(year=v.year, month=v.month, day=v.day))
    for c in s.curves:
        msg.curves.add(id=c.curve_id, currency=c.currency, day_count=int(daycount.DayCount[c.day_count]),
                       node_times=c.node_times.tolist(), values=c.node_values.tolist(), value_kind=int(c.value_kind),
                       interpolation=int(c.interpolation))
    for u in s.underlyings:
        m = msg.underlyings.add(id=u.underlying_id, currency=u.currency, discount_curve=u.discount_curve,
                                dividend_curve=u.dividend_curve, vol_surface=u.vol_surface)
        if u.spot is not None:
            m.spot = u.spot
        else:
            m.futures_price = u.futures_price
        for d in u.dividends:
            m.dividends.add(time=d.time, amount=d.amount)
    for h in s.heston:
        msg.heston.add(id=h.set_id, underlying=h.underlying,
                       parameters=pb.HestonParameters(v0=h.v0, kappa=h.kappa, theta=h.theta, sigma=h.sigma, rho=h.rho))
    for x in s.surfaces:
        m = msg.surfaces.add(id=x.surface_id, underlying=x.underlying_id, expiries=x.expiries.tolist())
        if isinstance(x, GridSurface):
            m.grid.CopyFrom(mpb.VolGrid(axis=int(x.axis), nodes=x.nodes.tolist(), vols=x.vols.reshape(-1).tolist()))
        else:
            names, kind = (_SVI, m.svi) if isinstance(x, SviSurface) else (_SABR, m.sabr)
            for row in x.params:
                kind.slices.add(**dict(zip(names, row.tolist())))
    return msg


def report_message(findings, compared_with: str = "") -> mpb.QualityReport:
    errors, warnings = severity_counts(findings)
    return mpb.QualityReport(
        findings=[mpb.Finding(severity=int(f.severity), check=f.check, field=f.field, message=f.message)
                  for f in findings],
        errors=errors, warnings=warnings, compared_with=compared_with,
    )


def info_message(record: StoredSnapshot, *, findings: bool = True) -> mpb.SnapshotInfo:
    """``findings`` False (ListSnapshots): the report's counts without its findings, which
    GetSnapshot returns; a listing stays small however many findings its snapshots have."""
    report = report_message(record.findings, record.compared_with)
    if not findings:
        report.ClearField("findings")
    return mpb.SnapshotInfo(
        id=record.snapshot_id, name=record.name, as_of=_timestamp(record.as_of),
        stored_at=_timestamp(record.stored_at), curves=record.counts[0], underlyings=record.counts[1],
        heston=record.counts[2], surfaces=record.counts[3], forced_reason=record.forced_reason,
        report=report, description=record.description,
    )


# ------------------------------------------------------------------ servicer
class MarketDataServicer:
    def __init__(self, service: MarketDataService):
        self.service = service

    @staticmethod
    def _snapshot(request) -> Snapshot:
        if not request.HasField("snapshot"):
            raise invalid("snapshot", "required")
        return snapshot_of(request.snapshot)

    def PutSnapshot(self, request, context, rid):
        bad = Violations()
        snapshot = None
        with bad.check():
            snapshot = self._snapshot(request)
        if bad:  # a bad reason is reported with the shape's violations (put: with the structure's)
            with bad.check():
                check_reason(request.force, request.reason)
            bad.raise_if_any()
        record, created = self.service.put(snapshot, force=request.force, reason=request.reason)
        return mpb.PutSnapshotResponse(info=info_message(record), created=created), 1, 0

    def GetSnapshot(self, request, context, rid):
        record = self.service.get(request.id)
        return mpb.GetSnapshotResponse(info=info_message(record), snapshot=snapshot_message(record.snapshot)), 1, 0

    def ListSnapshots(self, request, context, rid):
        records = self.service.list(request.name, request.limit)
        return mpb.ListSnapshotsResponse(snapshots=[info_message(r, findings=False) for r in records]), len(records), 0

    def DeleteSnapshot(self, request, context, rid):
        return mpb.DeleteSnapshotResponse(id=self.service.delete(request.id)), 1, 0

    def EvaluateCurve(self, request, context, rid):
        df, zero, fwd = self.service.evaluate_curve(request.snapshot_id, request.curve_id, request.times)
        reply = mpb.EvaluateCurveResponse(discount_factors=df.tolist(), zero_rates=zero.tolist(),
                                          forward_rates=fwd.tolist())
        return reply, len(df), 0

    def EvaluateSurface(self, request, context, rid):
        vols, w, f = self.service.evaluate_surface(request.snapshot_id, request.surface_id, request.expiries,
                                                   request.strikes, request.forwards)
        reply = mpb.EvaluateSurfaceResponse(vols=vols.tolist(), total_variances=w.tolist(), forwards=f.tolist())
        return reply, len(vols), 0

    def ValidateMarket(self, request, context, rid):
        findings, compared = self.service.validate(self._snapshot(request))
        return mpb.ValidateMarketResponse(report=report_message(findings, compared)), 1, 0


def handlers(servicer: MarketDataServicer, observer: RpcObserver, lane: Lane, auth=None,
             tracing=None) -> list[grpc.GenericRpcHandler]:
    """Every method in ``lane`` (the market-data class: its own gate, the batch pool), behind
    ``auth`` (an Authorizer; None: no policy), traced by ``tracing`` (None: off)."""
    service = mpb.DESCRIPTOR.services_by_name["MarketDataService"]
    methods = {}
    for method in service.methods:
        request_cls = getattr(mpb, method.input_type.name)
        methods[method.name] = grpc.unary_unary_rpc_method_handler(
            wrap_unary(f"/{SERVICE}/{method.name}", getattr(servicer, method.name), observer, lane=lane,
                       parse=safe_deserializer(request_cls), auth=auth, tracing=tracing),
            request_deserializer=None,
            response_serializer=None,
        )
    return [grpc.method_handlers_generic_handler(SERVICE, methods)]
