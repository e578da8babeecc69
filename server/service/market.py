"""Market data use cases: validate, store, read, list and delete snapshots.

Independent of transport. ``put`` refuses a snapshot whose structure is wrong
(INVALID_ARGUMENT naming every bad field), whose size is over the caps (RESOURCE_EXHAUSTED)
or whose quality report has error-level findings (FAILED_PRECONDITION, unless forced with a
reason, which is stored); nothing is stored then. The quality gates:

    curve.discount_factors  every node's discount factor finite and > 0 (error)
    curve.forward_bounds    discrete forwards between nodes within [-10%, 100%] (error) and
                            [-2%, 30%] (warning)
    curve.pillars           no node in the first year, or a gap where the next node is more
                            than 2.5x as far and over a year further (warning: missing pillars)
    staleness               as-of older than the server's maximum age (warning), or in the
                            future by more than a minute (error)
    jump.spot               spot or futures price moved more than 25% (warning) or 50% (error)
                            since the previous snapshot of the same name (the newest other
                            one with an as-of at or before this one's; stored as compared_with)
    jump.curve              a zero rate moved more than 100 bp (warning) at any node of the
                            same curve in the previous snapshot of the same name
    underlying.dividends    cash dividends worth the spot or more at their present value (error)
    underlying.vol_surface  the linked surface is built for another underlying (error)
    underlying.currency     the discount curve's currency is not the underlying's (warning:
                            quanto or collateral-currency discounting is legitimate)
    surface.*               calendar, butterfly, call-spread, Durrleman (errors), Lee's wing
                            (warning); surface.evaluable: the checks cannot evaluate it (error)
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import structlog

from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid, shown
from pricegrid.server.domain.market import Finding, Limits, Severity, Snapshot, SnapshotStore, StoredSnapshot
from pricegrid.server.domain.surfaces import GridSurface, StrikeAxis
from pricegrid.server.pricers import curves as curve_pricer
from pricegrid.server.pricers.market_columns import PreparedMarket
from pricegrid.server.pricers import surfaces as surface_pricer

#: discrete forwards outside these are errors, and outside the narrower ones warnings
FORWARD_ERROR = (-0.10, 1.00)
FORWARD_WARNING = (-0.02, 0.30)
SPOT_JUMP_WARNING = 0.25
SPOT_JUMP_ERROR = 0.50
CURVE_JUMP_WARNING = 0.01
#: snapshots kept parsed for pricing
_log = structlog.get_logger("pricegrid.market")
CACHED_SNAPSHOTS = 16
#: points of one EvaluateCurve / EvaluateSurface call
MAX_POINTS = 100_000
#: findings listed per check; past it one summary finding says how many more (an SVI surface
#: of 10,000 slices gave 540,000 findings, a 55 MB report)
MAX_FINDINGS_PER_CHECK = 100
#: characters of a force reason (INVALID_ARGUMENT past it, as a description past its cap)
MAX_REASON = 1024


@dataclass(frozen=True)
class MarketSettings:
    max_age: dt.timedelta = dt.timedelta(days=7)
    page_size: int = 100
    limits: Limits = Limits()
    #: a cached snapshot is checked against the store at most this long after the last check:
    #: another replica's delete stops this one pricing on it within this bound (and the check)
    recheck: dt.timedelta = dt.timedelta(milliseconds=500)
    #: the longest a check waits for a store connection: past it (or with the store down) the
    #: cached snapshot is served, its content being immutable, and checked again a period later
    recheck_wait: dt.timedelta = dt.timedelta(milliseconds=250)


def check_reason(force: bool, reason: str) -> None:
    """PutSnapshot's reason: required with force, at most MAX_REASON characters."""
    if force and not reason.strip():
        raise invalid("reason", "required with force: why error-level findings are accepted")
    if len(reason) > MAX_REASON:
        raise invalid("reason", f"{len(reason):,} characters; at most {MAX_REASON:,}")


def _violations_error(violations: Sequence[FieldViolation], code: Code = Code.INVALID_ARGUMENT) -> ServiceError:
    prefixed = [FieldViolation(f"snapshot.{v.field}", v.description) for v in violations]
    text = "; ".join(f"{v.field}: {v.description}" for v in prefixed[:10])
    more = f" (and {len(prefixed) - 10} more)" if len(prefixed) > 10 else ""
    return ServiceError(code, text + more, prefixed)


class MarketDataService:
    def __init__(self, store: SnapshotStore, settings: MarketSettings = MarketSettings(),
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.store = store
        self.settings = settings
        self.clock = clock
        # id -> (snapshot, monotonic time of the last check that the store holds it); a
        # snapshot never changes, but it may be deleted, here or by another replica
        self._cache: OrderedDict[str, tuple[Snapshot, float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._deletes = 0  # bumped by every delete: a fill read before one is not cached
        self._recheck_s = settings.recheck.total_seconds()
        self._recheck_wait_s = settings.recheck_wait.total_seconds()

    def snapshot(self, snapshot_id: str) -> Optional[Snapshot]:
        """A stored snapshot for pricing, from a small cache. A cached entry is checked
        against the store (``exists``, one indexed lookup) when its last check is older than
        ``settings.recheck``, by one caller (the others meanwhile use the cache): a delete by
        another replica sharing the store is seen within that bound and the check. A store
        that does not answer the check within ``settings.recheck_wait`` (down: UNAVAILABLE)
        leaves the cached snapshot served (its content never changes: only a delete made
        elsewhere meanwhile is missed, until the store is back), so that pricing on it never
        waits on the store. A fill whose read overlapped a delete is not cached (it would
        outlive it)."""
        if not snapshot_id:
            return None
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(snapshot_id)
            if hit is not None:
                self._cache.move_to_end(snapshot_id)
                if now - hit[1] <= self._recheck_s:
                    return hit[0]
                self._cache[snapshot_id] = (hit[0], now)  # this caller checks; the next ones need not
            deletes = self._deletes
        if hit is not None:
            try:
                held = self.store.exists(snapshot_id, timeout=self._recheck_wait_s)
            except ServiceError as exc:
                if exc.code != Code.UNAVAILABLE:
                    raise
                _log.warning("snapshot_recheck_unavailable", snapshot_id=snapshot_id, message=exc.message,
                             serving="cached")
                return hit[0]
            if held:
                return hit[0]
            self._forget(snapshot_id)
            return None
        record = self.store.get(snapshot_id)
        if record is None:
            return None
        with self._cache_lock:
            if self._deletes == deletes:  # no delete since the read began
                self._cache[snapshot_id] = (record.snapshot, now)
                while len(self._cache) > CACHED_SNAPSHOTS:
                    self._cache.popitem(last=False)
        return record.snapshot

    def _forget(self, snapshot_id: str) -> None:
        """Drops ``snapshot_id`` from the caches (this service's and the prepared underlyings)."""
        with self._cache_lock:
            self._deletes += 1
            self._cache.pop(snapshot_id, None)
        forget_prepared(snapshot_id)

    # ------------------------------------------------------------------ use cases
    def validate(self, snapshot: Snapshot) -> tuple[list[Finding], str]:
        """The quality report of a structurally valid snapshot: (findings, the id of the
        snapshot its jumps were measured against, or "")."""
        self._check_structure(snapshot)
        return self._report(snapshot)

    def _report(self, snapshot: Snapshot, snapshot_id: str = "") -> tuple[list[Finding], str]:
        findings = (self._curve_findings(snapshot) + self._underlying_findings(snapshot)
                    + self._surface_findings(snapshot) + self._staleness(snapshot))
        # the same as-of counts: a second snapshot of that time is measured against the first
        # (not against itself: the same content is the same id)
        previous = self.store.latest(snapshot.name, snapshot.as_of, exclude=snapshot_id or snapshot.content_id())
        if previous is not None and previous.snapshot is not None:
            findings += self._jumps(snapshot, previous.snapshot)
        return capped(findings), previous.snapshot_id if previous is not None else ""

    def put(self, snapshot: Snapshot, *, force: bool = False, reason: str = "") -> tuple[StoredSnapshot, bool]:
        """Store ``snapshot``; (the stored record, created). The same content twice gives the
        same id and ``created`` False."""
        bad = Violations()  # the reason's violation with the snapshot's, all at once
        with bad.check():
            check_reason(force, reason)
        with bad.check():
            self._check_structure(snapshot)
        bad.raise_if_any()
        snapshot_id = snapshot.content_id()  # (hashed once: the jump check excludes the snapshot itself)
        findings, compared_with = self._report(snapshot, snapshot_id)
        errors = [f for f in findings if f.severity == Severity.ERROR]
        if errors and not force:
            violations = [FieldViolation(f"snapshot.{f.field}" if f.field else "snapshot", f"{f.check}: {f.message}")
                          for f in errors]
            raise ServiceError(
                Code.FAILED_PRECONDITION,
                f"{len(errors)} error-level finding(s); fix them or set force with a reason: "
                + "; ".join(f"{v.field}: {v.description}" for v in violations[:5]),
                violations,
            )
        existing = self.store.get(snapshot_id)
        if existing is not None:
            return existing, False
        record = StoredSnapshot(
            snapshot_id, snapshot.name, snapshot.as_of, self.clock(),
            (len(snapshot.curves), len(snapshot.underlyings), len(snapshot.heston), len(snapshot.surfaces)),
            snapshot.description,
            reason.strip() if errors else "", tuple(findings), snapshot, compared_with,
        )
        created = self.store.put(record)
        return (record if created else self.store.get(snapshot_id)), created

    def get(self, snapshot_id: str) -> StoredSnapshot:
        record = self.store.get(snapshot_id) if snapshot_id else None
        if record is None:
            raise self._not_found(snapshot_id)
        return record

    def list(self, name: str = "", limit: int = 0) -> Sequence[StoredSnapshot]:
        if limit < 0:
            raise invalid("limit", f"must be >= 0 (got {limit})")
        page = self.settings.page_size
        return self.store.list(name, min(limit, page) if limit else page)

    def delete(self, snapshot_id: str) -> str:
        """Removes it from the store and the caches; from the caches also when another
        replica deleted it first (NOT_FOUND then, as for any absent id)."""
        deleted = bool(snapshot_id) and self.store.delete(snapshot_id)
        if snapshot_id:
            self._forget(snapshot_id)
        if not deleted:
            raise self._not_found(snapshot_id)
        return snapshot_id

    # ------------------------------------------------------------------ reading a stored curve or surface
    def _stored(self, snapshot_id: str) -> Snapshot:
        snapshot = self.snapshot(snapshot_id)
        if snapshot is None:
            raise self._not_found(snapshot_id, "snapshot_id")
        return snapshot

    @staticmethod
    def _required(value: str, path: str) -> None:
        if not value:
            raise invalid(path, "required")

    @staticmethod
    def _points(values: np.ndarray, path: str) -> np.ndarray:
        if len(values) > MAX_POINTS:
            raise ServiceError(Code.RESOURCE_EXHAUSTED, f"{path}: {len(values)} points; at most {MAX_POINTS:,}",
                               [FieldViolation(path, f"at most {MAX_POINTS:,} points")])
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if len(bad):
            raise invalid(f"{path}[{int(bad[0])}]", f"must be finite and >= 0 (got {shown(values[bad[0]])})")
        return values

    @staticmethod
    def _positive(values: np.ndarray, path: str) -> None:
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if len(bad):
            raise invalid(f"{path}[{int(bad[0])}]", f"must be finite and > 0 (got {shown(values[bad[0]])})")

    def evaluate_curve(self, snapshot_id: str, curve_id: str, times) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(discount factors, zero rates, instantaneous forwards) of a stored curve."""
        snapshot = self._stored(snapshot_id)
        self._required(curve_id, "curve_id")
        curve = snapshot.curve(curve_id)
        if curve is None:
            raise ServiceError(Code.NOT_FOUND, f"curve_id: no curve {curve_id!r} in this snapshot",
                               [FieldViolation("curve_id", f"no curve {curve_id!r}")])
        t = self._points(np.asarray(times, dtype=np.float64), "times")
        r = curve_pricer.evaluate_curve(curve, t, (curve_pricer.DISCOUNT, curve_pricer.ZERO_RATE, curve_pricer.FORWARD))
        return r.values[0], r.values[1], r.values[2]

    def evaluate_surface(self, snapshot_id: str, surface_id: str, expiries, strikes, forwards=()):
        """(vols, total variances, forwards) of a stored surface at (expiry, strike) points;
        without forwards, its underlying's forward at each expiry."""
        snapshot = self._stored(snapshot_id)
        self._required(surface_id, "surface_id")
        surface = snapshot.surface(surface_id)
        if surface is None:
            raise ServiceError(Code.NOT_FOUND, f"surface_id: no surface {surface_id!r} in this snapshot",
                               [FieldViolation("surface_id", f"no surface {surface_id!r}")])
        t = self._points(np.asarray(expiries, dtype=np.float64), "expiries")
        k = np.asarray(strikes, dtype=np.float64)
        if len(k) != len(t):
            raise invalid("strikes", f"{len(k)} strikes for {len(t)} expiries (one per point)")
        self._positive(k, "strikes")
        f = np.asarray(forwards, dtype=np.float64)
        self._positive(f, "forwards")
        if len(f) == 0:
            u = snapshot.underlying(surface.underlying_id)
            if u is None:
                raise invalid("forwards", f"required: the surface's underlying {surface.underlying_id!r} is not in"
                                          " this snapshot")
            level, rate, q, _, _ = resolve("", snapshot, u.underlying_id, "spot" if u.spot is not None else "forward", t)
            with np.errstate(over="ignore"):
                f = level * np.exp((rate - q) * t) if u.spot is not None else np.broadcast_to(level, t.shape)
            if not np.isfinite(f).all():  # an expiry so far out that the forward overflows
                i = int(np.flatnonzero(~np.isfinite(f))[0])
                raise invalid(f"expiries[{i}]", f"the underlying's forward at expiry {t[i]:g} is not finite")
        elif len(f) not in (1, len(t)):
            raise invalid("forwards", f"{len(f)} forwards for {len(t)} points (one per point, or one for all)")
        f = np.ascontiguousarray(np.broadcast_to(f, t.shape))
        r = surface_pricer.evaluate_surface(surface, t, np.ascontiguousarray(k), f,
                                            (surface_pricer.VOL, surface_pricer.TOTAL_VARIANCE))
        if r.bad:  # no silent NaN: name the first point the surface gives no vol at
            i = int(np.flatnonzero(r.status)[0])
            raise invalid(f"strikes[{i}]", f"no vol at expiry {t[i]:g}, strike {shown(k[i])}, forward {shown(f[i])}"
                                           " (strike and forward must be finite and > 0)")
        return r.values[0], r.values[1], f

    # ------------------------------------------------------------------ checks
    def _check_structure(self, snapshot: Snapshot) -> None:
        too_big = snapshot.check_size(self.settings.limits)
        if too_big:
            raise _violations_error(too_big, Code.RESOURCE_EXHAUSTED)
        violations = snapshot.validate(self.settings.limits)
        if violations:
            raise _violations_error(violations)

    @staticmethod
    def _not_found(snapshot_id: str, path: str = "id") -> ServiceError:
        """``path``: the request's field (GetSnapshot's id, EvaluateCurve's snapshot_id)."""
        what = f"no snapshot {snapshot_id!r} is stored" if snapshot_id else "required"
        return ServiceError(Code.NOT_FOUND if snapshot_id else Code.INVALID_ARGUMENT, f"{path}: {what}",
                            [FieldViolation(path, what)])

    @staticmethod
    def _curve_findings(snapshot: Snapshot) -> list[Finding]:
        out: list[Finding] = []
        for i, curve in enumerate(snapshot.curves):
            path = f"curves[{i}]"
            t = np.asarray(curve.node_times)
            df, status = curve_pricer.discount_factors(curve, t)
            for j in np.flatnonzero((status != 0) | ~(df > 0)):
                out.append(Finding(Severity.ERROR, "curve.discount_factors", f"{path}.values[{j}]",
                                   f"discount factor at t = {t[j]:g} is not finite and > 0 ({shown(df[j])})"))
            if out and out[-1].field.startswith(path):
                continue
            knots = np.concatenate(([0.0], t))
            dfs = np.concatenate(([1.0], df))
            fwd = -np.log(dfs[1:] / dfs[:-1]) / np.diff(knots)
            for j, f in enumerate(fwd):
                where = f"between t = {knots[j]:g} and {knots[j + 1]:g}"
                if not FORWARD_ERROR[0] <= f <= FORWARD_ERROR[1]:
                    out.append(Finding(Severity.ERROR, "curve.forward_bounds", f"{path}.values[{j}]",
                                       f"forward rate {f:.4%} {where} is outside [{FORWARD_ERROR[0]:.0%}, "
                                       f"{FORWARD_ERROR[1]:.0%}]"))
                elif not FORWARD_WARNING[0] <= f <= FORWARD_WARNING[1]:
                    out.append(Finding(Severity.WARNING, "curve.forward_bounds", f"{path}.values[{j}]",
                                       f"forward rate {f:.4%} {where} is outside [{FORWARD_WARNING[0]:.0%}, "
                                       f"{FORWARD_WARNING[1]:.0%}]"))
            if t[0] > 1.0:
                out.append(Finding(Severity.WARNING, "curve.pillars", f"{path}.node_times[0]",
                                   f"no node in the first year (the first is at t = {t[0]:g})"))
            for j in range(len(t) - 1):
                if t[j + 1] > 2.5 * t[j] and t[j + 1] - t[j] > 1.0:
                    out.append(Finding(Severity.WARNING, "curve.pillars", f"{path}.node_times[{j + 1}]",
                                       f"missing pillars: nothing between t = {t[j]:g} and {t[j + 1]:g}"))
        return out

    @staticmethod
    def _underlying_findings(snapshot: Snapshot) -> list[Finding]:
        """What would make every price on an underlying wrong or impossible: cash dividends
        worth the spot or more (the escrowed spot S - PV(D) is not > 0: error), a vol surface
        built for another underlying (error), a discount curve in another currency (warning:
        right only for quanto or collateral-currency discounting, which the caller must mean)."""
        out: list[Finding] = []
        for i, u in enumerate(snapshot.underlyings):
            path = f"underlyings[{i}]"
            curve = snapshot.curve(u.discount_curve)
            if curve is not None and curve.currency != u.currency:
                out.append(Finding(Severity.WARNING, "underlying.currency", f"{path}.discount_curve",
                                   f"{u.underlying_id} is in {u.currency}, its discount curve {curve.curve_id!r} in"
                                   f" {curve.currency}"))
            surface = snapshot.surface(u.vol_surface) if u.vol_surface else None
            if surface is not None and surface.underlying_id != u.underlying_id:
                out.append(Finding(Severity.ERROR, "underlying.vol_surface", f"{path}.vol_surface",
                                   f"surface {surface.surface_id!r} is built for {surface.underlying_id!r}, not"
                                   f" {u.underlying_id!r}"))
            if u.spot is not None and u.dividends and curve is not None:
                t = np.array([d.time for d in u.dividends])
                df, status = curve_pricer.discount_factors(curve, t)
                pv = float(np.sum(np.array([d.amount for d in u.dividends]) * df))
                if not status.any() and not pv < u.spot:  # (a bad discount factor: curve.discount_factors says so)
                    out.append(Finding(Severity.ERROR, "underlying.dividends", f"{path}.dividends",
                                       f"the cash dividends of {u.underlying_id} are worth {pv:g} today, not less"
                                       f" than its spot {u.spot:g}: no price can be made on it"))
        return out

    @staticmethod
    def _surface_findings(snapshot: Snapshot) -> list[Finding]:
        """Calendar and butterfly arbitrage (errors), Lee's wing bound on SVI (warning). A
        strike grid's butterflies need each expiry's forward: from the surface's underlying.
        A surface the checks cannot evaluate (a kernel refusing its points: Snapshot.validate
        keeps surfaces inside the kernels' bounds, so this is a backstop) is one error-level
        finding naming it, never an exception."""
        out: list[Finding] = []
        for i, x in enumerate(snapshot.surfaces):
            path = f"surfaces[{i}]"
            try:
                with np.errstate(over="ignore"):
                    out.extend(_surface_checks(snapshot, path, x))
            except (ValueError, ServiceError) as exc:  # (ServiceError: its underlying's forwards do not resolve)
                why = exc.message if isinstance(exc, ServiceError) else str(exc)
                out.append(Finding(Severity.ERROR, "surface.evaluable", path,
                                   f"{x.surface_id}: the arbitrage checks cannot evaluate it ({why})"))
        return out

    def _staleness(self, snapshot: Snapshot) -> list[Finding]:
        now = self.clock()
        age = now - snapshot.as_of
        if age < -dt.timedelta(minutes=1):
            return [Finding(Severity.ERROR, "staleness", "as_of", f"as-of {snapshot.as_of.isoformat()} is in the future")]
        if age > self.settings.max_age:
            return [Finding(Severity.WARNING, "staleness", "as_of",
                            f"as-of is {age.total_seconds() / 86400:.1f} days old (maximum age"
                            f" {self.settings.max_age.total_seconds() / 86400:g} days)")]
        return []

    @staticmethod
    def _jumps(snapshot: Snapshot, previous: Snapshot) -> list[Finding]:
        out: list[Finding] = []
        for i, u in enumerate(snapshot.underlyings):
            before = previous.underlying(u.underlying_id)
            if before is None or before.level is None or u.level is None:
                continue
            move = u.level / before.level - 1.0
            name = "spot" if u.spot is not None else "futures_price"
            if abs(move) > SPOT_JUMP_ERROR:
                severity = Severity.ERROR
            elif abs(move) > SPOT_JUMP_WARNING:
                severity = Severity.WARNING
            else:
                continue
            out.append(Finding(severity, "jump.spot", f"underlyings[{i}].{name}",
                               f"{u.underlying_id} moved {move:+.1%} since the previous snapshot"
                               f" ({before.level:g} -> {u.level:g})"))
        for i, curve in enumerate(snapshot.curves):
            before = previous.curve(curve.curve_id)
            if before is None:
                continue
            t = np.asarray(curve.node_times)
            now_z, s1 = curve_pricer.zero_rates(curve, t)
            then_z, s2 = curve_pricer.zero_rates(before, t)
            ok = (s1 == 0) & (s2 == 0)
            shift = np.where(ok, np.abs(now_z - then_z), 0.0)
            j = int(np.argmax(shift)) if len(shift) else 0
            if len(shift) and shift[j] > CURVE_JUMP_WARNING:
                out.append(Finding(Severity.WARNING, "jump.curve", f"curves[{i}].values[{j}]",
                                   f"{curve.curve_id}: zero rate at t = {t[j]:g} moved {shift[j] * 1e4:.0f} bp since"
                                   " the previous snapshot"))
        return out


def _surface_checks(snapshot: Snapshot, path: str, x) -> list[Finding]:
    """One surface's arbitrage findings (ValueError where a kernel cannot evaluate it)."""
    out: list[Finding] = []
    delta = isinstance(x, GridSurface) and x.axis == StrikeAxis.DELTA
    for f in surface_pricer.calendar_arbitrage(x):
        at = f"ln(K/F) = {f.at:g} (delta node {f.node})" if delta else f"axis point {f.at:g}"
        out.append(Finding(Severity.ERROR, "surface.calendar", f"{path}.expiries[{f.expiry}]",
                           f"total variance falls by {-f.value:.3g} from expiry {f.expiry - 1} to {f.expiry}"
                           f" at {at}"))
    forwards = None
    if isinstance(x, GridSurface) and x.axis == StrikeAxis.STRIKE:
        u = snapshot.underlying(x.underlying_id)
        if u is None:
            out.append(Finding(Severity.INFO, "surface.butterfly", path,
                               "not checked: a strike grid needs its underlying's forwards"))
            return out
        level, rate, q, _, _ = resolve("", snapshot, u.underlying_id,
                                       "spot" if u.spot is not None else "forward", x.expiries)
        forwards = level * np.exp((rate - q) * x.expiries) if u.spot is not None else np.broadcast_to(
            level, x.expiries.shape)
        if not (np.isfinite(forwards) & (forwards > 0)).all():
            raise ValueError(f"the forward of {u.underlying_id} is not finite and > 0 at an expiry")
    for f in surface_pricer.butterfly_arbitrage(x, forwards=forwards):
        severity = Severity.WARNING if f.check == "lee_wing" else Severity.ERROR
        where = "the left wing" if f.node == -1 else "the right wing" if f.node == -2 else f"axis point {f.at:g}"
        out.append(Finding(severity, f"surface.{f.check}", f"{path}.expiries[{f.expiry}]",
                           f"{f.check} at expiry {f.expiry}, {where}: {f.value:.3g}"))
    return out


def capped(findings: Sequence[Finding], per_check: int = MAX_FINDINGS_PER_CHECK) -> list[Finding]:
    """The first ``per_check`` findings of each check, each check's together where its first
    one was, then a summary finding of that check (the worst severity of those left out, the
    field of the first of them) saying how many more there are."""
    by_check: dict[str, list[Finding]] = {}
    for f in findings:
        by_check.setdefault(f.check, []).append(f)
    out: list[Finding] = []
    for f in findings:
        group = by_check[f.check]
        if f is group[0]:
            out.extend(group[:per_check])
            rest = group[per_check:]
            if rest:
                out.append(Finding(max(x.severity for x in rest), f.check, rest[0].field,
                                   f"and {len(rest):,} more {f.check} findings (the first {per_check} are listed)"))
    return out


def severity_counts(findings: Sequence[Finding]) -> tuple[int, int]:
    """(errors, warnings)."""
    return (sum(f.severity == Severity.ERROR for f in findings), sum(f.severity == Severity.WARNING for f in findings))


# ------------------------------------------------------------------ pricing against a snapshot
def prepare(snapshot_id: str, snapshot: Snapshot, underlying_id: str, underlying_kind: str,
            und_path: str = "market.underlying_id", *, want_vol: bool = False):
    """(PreparedMarket, MarketUsed) of one underlying of ``snapshot`` (stored under
    ``snapshot_id``) for a model that prices on ``underlying_kind`` ("spot" or "forward"),
    with its vol surface when ``want_vol``. Snapshots are immutable (the id is a content
    hash), so a stored one's prepared market is kept in a small LRU and shared by requests
    (``snapshot_id`` "": a snapshot being validated, prepared afresh).
    MarketUsed.dividends is 0 here: how many cash dividends the rows took is known once
    their expiries are read."""
    from pricegrid.server.domain.instruments import MarketUsed

    u = snapshot.underlying(underlying_id) if underlying_id else None
    if u is None:
        what = f"no underlying {underlying_id!r} in snapshot {snapshot.name!r}" if underlying_id else \
            "required with snapshot_id: the underlying to price on"
        raise ServiceError(Code.NOT_FOUND if underlying_id else Code.INVALID_ARGUMENT, f"{und_path}: {what}",
                           [FieldViolation(und_path, what)])
    if underlying_kind == "spot" and u.spot is None:
        raise invalid(und_path, f"{underlying_id} is quoted by a futures price; this model prices on a spot"
                                " (use MODEL_BLACK_76 for futures options)")
    if underlying_kind == "forward" and u.futures_price is None:
        raise invalid(und_path, f"{underlying_id} is quoted by a spot; this model prices on a futures price or"
                                " forward (use MODEL_BLACK_SCHOLES_MERTON)")
    if want_vol and not (u.vol_surface and snapshot.surface(u.vol_surface) is not None):
        raise invalid(und_path.replace("underlying_id", "volatility"),
                      f"required: {underlying_id} has no volatility surface in this snapshot")
    used = MarketUsed(snapshot_id, underlying_id, u.discount_curve, u.dividend_curve, 0,
                      u.vol_surface if want_vol else "")
    key = (snapshot_id, underlying_id, bool(want_vol)) if snapshot_id else None  # "": not stored (yet)
    with _PREPARED_LOCK:
        prepared = _PREPARED.get(key) if key else None
        if prepared is not None:
            _PREPARED.move_to_end(key)
            return prepared, used
    prepared = PreparedMarket(snapshot.curve(u.discount_curve),
                              snapshot.curve(u.dividend_curve) if u.dividend_curve else None,
                              u.level, u.spot is not None, [(d.time, d.amount) for d in u.dividends],
                              snapshot.surface(u.vol_surface) if want_vol else None)
    if key is None:
        return prepared, used
    with _PREPARED_LOCK:
        _PREPARED[key] = prepared
        while len(_PREPARED) > _PREPARED_MAX:
            _PREPARED.popitem(last=False)
    return prepared, used


#: prepared underlyings by (snapshot id, underlying id, with vols): a few hundred KiB at most.
#: Only read with a snapshot the service returned (MarketDataService.snapshot checks that it is
#: still stored); a delete drops its entries (forget_prepared) so that none outlives it.
_PREPARED: "OrderedDict[tuple, PreparedMarket]" = OrderedDict()
_PREPARED_LOCK = threading.Lock()
_PREPARED_MAX = 64


def forget_prepared(snapshot_id: str) -> None:
    with _PREPARED_LOCK:
        for key in [k for k in _PREPARED if k[0] == snapshot_id]:
            del _PREPARED[key]


def resolve(snapshot_id: str, snapshot: Snapshot, underlying_id: str, underlying_kind: str, times: np.ndarray,
            und_path: str = "market.underlying_id", *, strikes: Optional[np.ndarray] = None, want_vol: bool = False):
    """The market columns of rows with expiries ``times`` (n or 1) on one underlying of
    ``snapshot`` (stored under ``snapshot_id``): (level, rate, dividend yield, vol,
    MarketUsed). ``underlying_kind`` is what the model prices on ("spot" or "forward"); the
    rate is the discount curve's continuously compounded zero rate at each expiry
    (DF = exp(-r T)), the dividend yield the dividend curve's (0 without one), and cash
    dividends with ex-time in (0, T] come off the spot at their present value on the
    discount curve (escrowed-dividend model). With ``want_vol`` the fourth column is each
    row's vol on the underlying's surface at (T, K, F): K the row's strike (the forward where
    there is none or it is not > 0), F its forward; else None."""
    prepared, used = prepare(snapshot_id, snapshot, underlying_id, underlying_kind, und_path, want_vol=want_vol)
    level, rate, q, vol, dividends = prepared.columns(times, strikes if want_vol else None)
    return level, rate, q, vol, used._replace(dividends=dividends)
