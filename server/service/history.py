"""Historical scenario levels read from stored snapshots.

Each component of a scenario set's shifts has one level per snapshot, read where the shift
points in that snapshot (its selector must match exactly one object there, the same id in
every snapshot, so that a level series is one object's history):

* SPOT (parallel): the underlying's quoted level (spot, or futures price);
* ZERO_RATE, DIVIDEND_YIELD (buckets): the curve's continuously compounded zero rate at each
  pillar;
* VOL (buckets): the at-the-money vol (K = F, the forward at the pillar) of the surface at
  each pillar; (grid) the vol at each expiry and K = moneyness x F.

A parallel rate or vol shift has no single level (which tenor?) and a time roll none at
all: both are refused, naming the shift. The changes between snapshots are then taken as
for any history (pricegrid.server.domain.scenarios.historical_sizes).
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np

from pricegrid.server.domain.errors import Code, Violations, invalid
from pricegrid.server.domain.market import StoredSnapshot
from pricegrid.server.domain.scenarios import HESTON, Buckets, Grid, Parallel, Quantity, Shift
from pricegrid.server.pricers import curves as curve_pricer
from pricegrid.server.pricers import surfaces as surface_pricer
from pricegrid.server.service.market import MarketDataService, resolve

#: the most snapshots one history may read
MAX_SNAPSHOTS = 5_000


def _utc(text: str, path: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(path, f"{text!r} is not an RFC 3339 date or date-time") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _plain_date(text: str) -> bool:
    """Whether ``text`` is a date without a time (its day is meant whole)."""
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def series(market: MarketDataService, ids: Sequence[str], name: str, start: str, end: str,
           path: str) -> list[StoredSnapshot]:
    """The snapshots of a history, oldest first: the ids as given (their as-of strictly
    increasing), or every snapshot named ``name`` with as-of in [start, end]: a plain-date
    start from the beginning of its day, a plain-date end through the end of its day (UTC)."""
    if bool(ids) == bool(name):
        raise invalid(path, "give the snapshots' ids, or a name (with an optional start and end)")
    if ids:
        if len(ids) > MAX_SNAPSHOTS:
            raise invalid(f"{path}.ids", f"{len(ids):,} snapshots; at most {MAX_SNAPSHOTS:,}",
                          code=Code.RESOURCE_EXHAUSTED)
        records = []
        for i, sid in enumerate(ids):
            r = market.store.get(sid) if sid else None
            if r is None:
                raise invalid(f"{path}.ids[{i}]", f"no snapshot {sid!r} is stored", code=Code.NOT_FOUND)
            if records and r.as_of <= records[-1].as_of:
                raise invalid(f"{path}.ids[{i}]", f"as of {r.as_of.isoformat()}, not after the one before it: "
                                                  "give the snapshots in time order")
            records.append(r)
        return records
    lo = _utc(start, f"{path}.start") if start else None
    hi = _utc(end, f"{path}.end") if end else None
    # a plain-date end means through the end of that day (UTC): before the next day's start
    before = hi + dt.timedelta(days=1) if hi is not None and _plain_date(end) else None
    found = [r for r in market.store.list(name, limit=MAX_SNAPSHOTS + 1)
             if (lo is None or r.as_of >= lo)
             and (hi is None or (r.as_of < before if before is not None else r.as_of <= hi))]
    if len(found) > MAX_SNAPSHOTS:
        raise invalid(path, f"over {MAX_SNAPSHOTS:,} snapshots named {name!r}: narrow start and end",
                      code=Code.RESOURCE_EXHAUSTED)
    found.sort(key=lambda r: (r.as_of, r.stored_at))
    out: list[StoredSnapshot] = []
    for r in found:  # one per as-of: the last stored
        if out and out[-1].as_of == r.as_of:
            out[-1] = r
        else:
            out.append(r)
    if len(out) < 2:
        raise invalid(f"{path}.name", f"{len(out)} snapshot(s) named {name!r} in the range: a history needs two",
                      code=Code.NOT_FOUND if not out else Code.INVALID_ARGUMENT)
    return out


def _matched(shift: Shift, ids: Sequence[str], what: str, sid: str, path: str) -> str:
    hits = [x for x in ids if shift.matches(x)]
    if len(hits) != 1:
        raise invalid(f"{path}.selector", f"a level read from snapshots needs one {what}: {list(shift.selector)} "
                                          f"matches {hits or 'none'} in snapshot {sid}")
    return hits[0]


def levels(market: MarketDataService, records: Sequence[StoredSnapshot], shifts: Sequence[Shift],
           prefix: str) -> tuple[np.ndarray, list[str]]:
    """(snapshots x components levels, a label per snapshot: its as-of date, or date-time
    when two share a date)."""
    bad = Violations()
    for i, s in enumerate(shifts):
        path = f"{prefix}shifts[{i}]"
        if s.quantity == Quantity.TIME:
            bad.add(f"{path}.quantity", "a time roll has no level in a snapshot")
        elif s.quantity in HESTON:
            bad.add(f"{path}.quantity", "a Heston parameter has no level in a snapshot here (trades carry their own)")
        elif s.quantity != Quantity.SPOT and isinstance(s.shape, Parallel):
            bad.add(f"{path}.shape", "a level read from snapshots needs buckets (a rate or vol per pillar) or, "
                                     "for vols, a grid: a parallel shift has no single level")
    bad.raise_if_any()
    components = sum(s.components for s in shifts)
    out = np.empty((len(records), components))
    chosen: dict[int, str] = {}
    for r_i, record in enumerate(records):
        snap = market.snapshot(record.snapshot_id)
        sid = record.snapshot_id
        col = 0
        for i, s in enumerate(shifts):
            path = f"{prefix}shifts[{i}]"
            if s.quantity == Quantity.SPOT:
                uid = _matched(s, [u.underlying_id for u in snap.underlyings], "underlying", sid, path)
                values = np.array([snap.underlying(uid).level])
            elif s.quantity in (Quantity.ZERO_RATE, Quantity.DIVIDEND_YIELD):
                role = "discount_curve" if s.quantity == Quantity.ZERO_RATE else "dividend_curve"
                curves = sorted({getattr(u, role) for u in snap.underlyings if getattr(u, role)})
                uid = _matched(s, curves, role.replace("_", " "), sid, path)
                values, status = curve_pricer.zero_rates(snap.curve(uid), np.asarray(s.shape.pillars, dtype=float))
                if np.any(status):
                    raise invalid(f"{path}.buckets.tenors", f"the curve {uid!r} gives no zero rate at a pillar in "
                                                            f"snapshot {sid}")
            else:
                surfaces = [x.surface_id for x in snap.surfaces]
                uid = _matched(s, surfaces, "surface", sid, path)
                values = _vols(snap, sid, uid, s.shape, path)
            if chosen.setdefault(i, uid) != uid:
                raise invalid(f"{path}.selector", f"matches {chosen[i]!r} in one snapshot and {uid!r} in snapshot "
                                                  f"{sid}: a level series must be one object's")
            out[r_i, col:col + s.components] = values
            col += s.components
    days = [r.as_of.date().isoformat() for r in records]
    if len(set(days)) < len(days):
        days = [r.as_of.isoformat(timespec="seconds") for r in records]
    return out, days


def _vols(snap, sid: str, surface_id: str, shape, path: str) -> np.ndarray:
    surface = snap.surface(surface_id)
    u = snap.underlying(surface.underlying_id)
    if u is None:
        raise invalid(f"{path}.selector", f"the surface {surface_id!r}'s underlying is not in snapshot {sid}")
    if isinstance(shape, Buckets):
        t, m = np.asarray(shape.pillars, dtype=float), np.ones(len(shape.pillars))
    else:
        assert isinstance(shape, Grid)
        t = np.repeat(np.asarray(shape.expiries, dtype=float), len(shape.moneyness))
        m = np.tile(np.asarray(shape.moneyness, dtype=float), len(shape.expiries))
    t = np.maximum(t, 1e-6)  # an ON pillar: the vol just after today
    level, rate, q, _, _ = resolve(sid, snap, u.underlying_id, "spot" if u.spot is not None else "forward", t)
    f = level * np.exp((rate - q) * t) if u.spot is not None else np.broadcast_to(level, t.shape)
    f = np.ascontiguousarray(np.broadcast_to(f, t.shape), dtype=float)
    r = surface_pricer.evaluate_surface(surface, t, m * f, f, (surface_pricer.VOL,))
    if r.bad:
        raise invalid(f"{path}.shape", f"the surface {surface_id!r} gives no vol at a node in snapshot {sid}")
    return r.values[0]
