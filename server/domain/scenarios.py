"""Scenario sets: shifts of a base market, stated in market coordinates.

A scenario set is a list of *shifts* and a matrix of their sizes, one column per scenario.
Each shift says what moves (a quantity of the market objects its selector names), how a
size applies to it (absolute, relative, log or a fixed value) and along which shape:

* ``Parallel()``: one size moves the whole object (one row of the matrix);
* ``Buckets(pillars)``: one size per pillar (tenors for curves, expiries for vols), spread
  over times by triangular weights between neighbouring pillars and flat beyond the first
  and last: a time at pillar i takes all of size i, a time between pillars i and i + 1 a
  linear mix of the two, so that equal sizes on every pillar are the parallel shift;
* ``Grid(expiries, moneyness)``: for vol surfaces, one size per expiry x moneyness (K/F)
  node, with the product of the two triangular weights (bilinear, flat beyond the edges).

The matrix has one row per shift *component* (1, len(pillars), or expiries x moneyness,
in the order of the shifts, then row-major over a grid) and one column per scenario; its
rows are named by :meth:`ScenarioSet.component_labels`. A scenario is never addressed by a
row index of a batch, only by the coordinates above.

Conventions:

* Selectors are glob patterns (``fnmatch``: ``*``, ``?``, ``[...]``) over ids: underlying ids
  for SPOT, surface ids for VOL, the discount curve's id for ZERO_RATE and the dividend
  curve's id for DIVIDEND_YIELD (the curves the underlying names in those roles). A shift that matches nothing in the base snapshot is an
  error naming the shift, never a silent no-op.
* Sizes: ABSOLUTE adds (vol 0.01 = one vol point; rates 0.0001 = one basis point, in the
  continuously compounded zero rate), RELATIVE multiplies by 1 + size, LOG by exp(size),
  FIXED replaces the value by the size. Several shifts of the same quantity of the same
  object apply in the order they are listed.
* TIME rolls the valuation date forward by the size in years (parallel, absolute only):
  every expiry shortens by it, the market itself is held (a sticky roll).
* Tenors ``ON``/``TN``, ``<n>D``, ``<n>W``, ``<n>M``, ``<n>Y`` become year fractions as
  n/365, 7n/365, n/12 and n (the snapshot's curves and surfaces are in years).
"""

from __future__ import annotations

import datetime as _dt
import enum
import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from pricegrid.server.domain.errors import Code, Violations


class Quantity(enum.IntEnum):
    SPOT = 1             # an underlying's spot or futures price
    VOL = 2              # a surface's implied vol
    ZERO_RATE = 3        # a discount curve's zero rate
    DIVIDEND_YIELD = 4   # a dividend curve's yield
    TIME = 5             # the valuation date rolled forward, in years
    # Heston's parameters of the trades priced under MODEL_HESTON on an underlying
    HESTON_V0 = 6        # initial variance
    HESTON_KAPPA = 7     # mean reversion speed
    HESTON_THETA = 8     # long-run variance
    HESTON_SIGMA = 9     # vol of variance
    HESTON_RHO = 10      # spot-variance correlation


#: the Heston quantities -> the MarketBatch column each moves
HESTON = {Quantity.HESTON_V0: "v0", Quantity.HESTON_KAPPA: "kappa", Quantity.HESTON_THETA: "theta",
          Quantity.HESTON_SIGMA: "sigma", Quantity.HESTON_RHO: "rho"}


class ShiftKind(enum.IntEnum):
    ABSOLUTE = 1
    RELATIVE = 2
    LOG = 3
    FIXED = 4


class Smile(enum.IntEnum):
    """How a vol surface moves with the spot: STICKY_STRIKE keeps each strike's vol;
    STICKY_MONEYNESS keeps each moneyness's vol when the spot moves (a row's vol is read
    again at K S0/S1; rate and yield shifts do not move the smile)."""

    STICKY_STRIKE = 1
    STICKY_MONEYNESS = 2


@dataclass(frozen=True)
class Parallel:
    @property
    def components(self) -> int:
        return 1


@dataclass(frozen=True)
class Buckets:
    pillars: tuple[float, ...]        # years, increasing
    labels: tuple[str, ...] = ()      # as sent (e.g. "3M"); default: the years

    @property
    def components(self) -> int:
        return len(self.pillars)


@dataclass(frozen=True)
class Grid:
    expiries: tuple[float, ...]       # years, increasing
    moneyness: tuple[float, ...]      # K/F, increasing

    @property
    def components(self) -> int:
        return len(self.expiries) * len(self.moneyness)


Shape = Union[Parallel, Buckets, Grid]

#: the kind of market object each quantity lives on (what its selector is matched against)
TARGET = {Quantity.SPOT: "underlying", Quantity.VOL: "surface", Quantity.ZERO_RATE: "discount curve",
          Quantity.DIVIDEND_YIELD: "dividend curve", Quantity.TIME: "valuation date",
          **{q: "underlying" for q in HESTON}}


@dataclass(frozen=True)
class Shift:
    name: str
    quantity: Quantity
    kind: ShiftKind
    selector: tuple[str, ...]         # glob patterns; empty for TIME
    shape: Shape = field(default_factory=Parallel)

    @property
    def components(self) -> int:
        return self.shape.components

    def component_labels(self) -> list[str]:
        s = self.shape
        if isinstance(s, Parallel):
            return [self.name]
        if isinstance(s, Buckets):
            labels = s.labels or tuple(_years(p) for p in s.pillars)
            return [f"{self.name}/{x}" for x in labels]
        return [f"{self.name}/{_years(t)}/{m:g}" for t in s.expiries for m in s.moneyness]

    def matches(self, object_id: str) -> bool:
        return any(fnmatch.fnmatchcase(object_id, p) for p in self.selector)


def _years(t: float) -> str:
    return f"{t:g}y"


# ------------------------------------------------------------------------------- tenors
_TENOR = re.compile(r"^\s*(\d+)\s*([DWMY])\s*$", re.IGNORECASE)


def tenor_years(label: str) -> float:
    """A tenor label or a number of years as text, in years (see the module notes)."""
    text = label.strip().upper()
    if text in ("ON", "O/N"):
        return 1.0 / 365.0
    if text in ("TN", "T/N"):
        return 2.0 / 365.0
    m = _TENOR.match(text)
    if m and len(m.group(1)) <= 6:
        n, unit = int(m.group(1)), m.group(2).upper()
        return {"D": n / 365.0, "W": 7.0 * n / 365.0, "M": n / 12.0, "Y": float(n)}[unit]
    try:
        value = float(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{label!r} is not a tenor (ON, TN, <n>D, <n>W, <n>M, <n>Y) or a number of years") from None
    if not math.isfinite(value):
        raise ValueError(f"{label!r} is not finite")
    return value


# ------------------------------------------------------------------------------ weights
def tent_weights(pillars: Sequence[float], x: np.ndarray) -> np.ndarray:
    """(len(x), len(pillars)) triangular weights: each row sums to 1; a point at a pillar
    takes weight 1 there; between two pillars, linear; beyond the ends, flat (weight 1 on
    the end pillar). A NaN point gets NaN weights."""
    p = np.asarray(pillars, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.zeros((x.size, p.size))
    if p.size == 1:
        w[:, 0] = 1.0
        w[np.isnan(x)] = np.nan
        return w
    xc = np.clip(x, p[0], p[-1])
    i = np.clip(np.searchsorted(p, xc, side="right") - 1, 0, p.size - 2)
    a = (xc - p[i]) / (p[i + 1] - p[i])
    rows = np.arange(x.size)
    w[rows, i] = 1.0 - a
    w[rows, i + 1] += a
    w[np.isnan(x)] = np.nan
    return w


def shape_weights(shape: Shape, expiry: np.ndarray, moneyness: np.ndarray | None = None) -> np.ndarray:
    """(rows, components): how much of each component of ``shape`` reaches each row, from
    the row's expiry (years) and, for a grid, its moneyness K/F."""
    expiry = np.asarray(expiry, dtype=np.float64)
    if isinstance(shape, Parallel):
        return np.ones((expiry.size, 1))
    if isinstance(shape, Buckets):
        return tent_weights(shape.pillars, expiry)
    if moneyness is None:
        raise ValueError("a grid shift needs each row's moneyness")
    we = tent_weights(shape.expiries, expiry)                     # (rows, ne)
    wm = tent_weights(shape.moneyness, np.asarray(moneyness, dtype=np.float64))  # (rows, nm)
    return (we[:, :, None] * wm[:, None, :]).reshape(expiry.size, -1)


def apply(kind: ShiftKind, base: np.ndarray, size: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The shifted values: ``base`` (rows, 1) or (rows,) broadcast against ``size`` (rows or
    1, scenarios); into ``out`` (of the broadcast shape) when given."""
    base = np.asarray(base, dtype=np.float64)
    if base.ndim == 1:
        base = base[:, None]
    size = np.asarray(size, dtype=np.float64)
    shape = np.broadcast_shapes(base.shape, size.shape)
    if out is None:
        out = np.empty(shape)
    if kind == ShiftKind.ABSOLUTE:
        return np.add(base, size, out=out)
    if kind == ShiftKind.RELATIVE:
        np.add(size, 1.0, out=out)
        return np.multiply(out, base, out=out)
    if kind == ShiftKind.LOG:
        np.exp(np.broadcast_to(size, shape), out=out)
        return np.multiply(out, base, out=out)
    if kind == ShiftKind.FIXED:
        out[...] = size
        return out
    raise ValueError(f"unknown shift kind {kind!r}")


def row_sizes(shift: Shift, block: np.ndarray, expiry: np.ndarray, moneyness: np.ndarray | None = None) -> np.ndarray:
    """(rows, scenarios): the size of ``shift`` at each row, from its block of the matrix
    (components, scenarios); (1, scenarios) for a parallel shift (the same at every row).
    A FIXED bucketed or grid shift interpolates the fixed values with the same weights."""
    if isinstance(shift.shape, Parallel):
        return np.asarray(block, dtype=np.float64).reshape(1, -1)
    return weighted_rows(shape_weights(shift.shape, expiry, moneyness), np.asarray(block, dtype=np.float64))


def weighted_rows(w: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``w @ block`` ((rows, components) x (components, scenarios)) summed, cell by cell,
    over the nonzero weights of its row in component order (at most 2 for buckets, 4 for a
    grid): a cell's bits do not depend on the other rows or scenarios of the call, as a BLAS
    product's last bit may (so a scenario gives the same P&L in any set that holds it)."""
    if w.shape[1] == 0 or w.shape[0] == 0:
        return np.zeros((w.shape[0], block.shape[1]))
    nonzero = w != 0
    k = max(1, int(nonzero.sum(axis=1).max()))
    idx = np.argsort(~nonzero, axis=1, kind="stable")[:, :k]  # each row's nonzero components first, in order
    wk = np.take_along_axis(w, idx, axis=1)
    out = wk[:, :1] * block[idx[:, 0]]
    for j in range(1, k):
        out += wk[:, j:j + 1] * block[idx[:, j]]
    return out


# ------------------------------------------------------------------------ default bumps
#: a bump that moves the value by about 1e-3 of itself, or one basis point of a rate
RELATIVE_BUMP = 1e-3
RATE_BUMP = 1e-4
VOL_BUMP = 1e-3
TIME_BUMP = 1.0 / 365.0


def default_bump(shift: Shift, level: float = 1.0) -> float:
    """The bump a Taylor expansion takes for ``shift`` when the caller gives none, in the
    shift's units: SPOT relative or log 1e-3, absolute 1e-3 x ``level`` (the underlying's
    quoted level); VOL absolute 1e-3 (a tenth of a vol point); ZERO_RATE and DIVIDEND_YIELD
    absolute 1e-4 (a basis point); any other relative or log 1e-3; TIME 1/365 (a day)."""
    if shift.quantity == Quantity.TIME:
        return TIME_BUMP
    if shift.kind != ShiftKind.ABSOLUTE:
        return RELATIVE_BUMP
    if shift.quantity == Quantity.SPOT:
        return RELATIVE_BUMP * abs(level) if level else RELATIVE_BUMP
    return VOL_BUMP if shift.quantity == Quantity.VOL else RATE_BUMP


# ------------------------------------------------------------------------ scenario set
class _Prefixed(Violations):
    """Violations whose fields are named from ``prefix`` (the set's path in a request)."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def add(self, field_path: str, description: str, code: Code = Code.INVALID_ARGUMENT) -> None:
        super().add(self.prefix + field_path, description, code)


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """Shifts and their sizes: ``values`` is (components, scenarios), float64."""

    shifts: tuple[Shift, ...]
    values: np.ndarray
    labels: tuple[str, ...]
    smile: Smile = Smile.STICKY_STRIKE
    #: where each shift came from in the request when not shifts[i] (a named stress's
    #: shifts: "stresses[1]", "stress_targets[0]"): the field its violations name
    origins: tuple[str, ...] = ()
    #: the request field the sizes come from ("sizes"; "history.levels" for the changes of
    #: a history; "": made by the server from the shifts, as a bump set's)
    sizes_path: str = "sizes"
    #: per scenario, the field its label comes from when not labels[j] (a named stress's
    #: scenarios: "stresses[1]"); ``own_labels`` False: the labels are the server's (a bump
    #: set's), never named
    label_paths: tuple[str, ...] = ()
    own_labels: bool = True
    #: per shift, the named stress it comes from ("stresses[1]"; "": the set's own)
    stress_paths: tuple[str, ...] = ()

    @property
    def scenarios(self) -> int:
        return len(self.labels)

    @property
    def components(self) -> int:
        return sum(s.components for s in self.shifts)

    def component_labels(self) -> list[str]:
        return [label for s in self.shifts for label in s.component_labels()]

    def subset(self, columns: np.ndarray) -> "ScenarioSet":
        """The same shifts under the scenarios ``columns`` only (indices, in order)."""
        columns = np.asarray(columns, dtype=np.int64)
        return ScenarioSet(self.shifts, np.ascontiguousarray(np.asarray(self.values)[:, columns]),
                           tuple(self.labels[j] for j in columns), self.smile, self.origins, self.sizes_path,
                           tuple(self.label_paths[j] for j in columns) if self.label_paths else (),
                           self.own_labels, self.stress_paths)

    def blocks(self) -> Iterable[tuple[Shift, np.ndarray]]:
        """Each shift with its rows of ``values`` (components, scenarios)."""
        row = 0
        for s in self.shifts:
            yield s, self.values[row:row + s.components]
            row += s.components

    def validate(self, ids: Optional[dict[str, Iterable[str]]], max_cells: int = 50_000_000, prefix: str = "") -> None:
        """Raise every violation at once (a ServiceError naming each field): shapes, sizes,
        pillars, kinds, and selectors that match nothing among ``ids`` (kind of object ->
        its ids in the base snapshot: "underlying", "surface", "curve"; None: no snapshot
        yet, selectors are not matched). ``prefix``: the set's path in the request, put
        before each field named."""
        v = _Prefixed(prefix)
        if not self.shifts:
            v.add("shifts", "at least one shift")
        if not self.labels and self.own_labels:
            v.add("labels", "at least one scenario")
        seen: dict[str, str] = {}
        for j, label in enumerate(self.labels if self.own_labels else ()):
            path = self.label_paths[j] if j < len(self.label_paths) and self.label_paths[j] else f"labels[{j}]"
            if not label.strip():
                v.add(path, "empty")
            elif label in seen:
                v.add(path, f"{label!r} repeats {seen[label]}" if path.startswith("labels[") else
                       f"its scenario {label!r} repeats {seen[label]}")
            else:
                seen[label] = path
        names: dict[str, str] = {}
        for i, s in enumerate(self.shifts):
            self._check_shift(v, i, s, ids, names, self.origins[i] if i < len(self.origins) else "",
                              self.stress_paths[i] if i < len(self.stress_paths) else "")
        values = np.asarray(self.values)
        # the sizes' field: the request's, or the stress a cell belongs to
        sizes = self.sizes_path or "shifts"
        if values.ndim != 2 or values.shape != (self.components, len(self.labels)):
            v.add(sizes, f"shape {values.shape}; expected (components, scenarios) = "
                         f"({self.components}, {len(self.labels)})")
        elif values.size > max_cells:
            v.add(sizes, f"{values.size:,} sizes; at most {max_cells:,}", Code.RESOURCE_EXHAUSTED)
        else:
            bad = np.argwhere(~np.isfinite(values))
            if bad.size:
                r, c = bad[0]
                shift = int(np.searchsorted(np.cumsum([x.components for x in self.shifts]), r, side="right"))
                stress = self.stress_paths[shift] if shift < len(self.stress_paths) else ""
                v.add(stress or sizes, f"not finite at component {r} ({self.component_labels()[r]}), "
                                       f"scenario {c} ({self.labels[c]}); {len(bad)} such")
        v.raise_if_any()

    @staticmethod
    def _check_shift(v: Violations, i: int, s: Shift, ids, names, origin: str = "", stress: str = "") -> None:
        path = origin or f"shifts[{i}]"
        selector = f"{path}.selector" if path.startswith("shifts[") else path
        # a stress's shift is named by the stress (a repeated string: no .name of its own)
        name_path = stress or f"{path}.name"
        if not s.name.strip():
            v.add(name_path, "required")
        elif s.name in names:
            v.add(name_path, f"{s.name!r} repeats {names[s.name]}" if not stress else
                  f"its shift {s.name!r} repeats {names[s.name]}")
        else:
            names[s.name] = f"{stress}'s shift {s.name!r}" if stress else f"shifts[{i}].name"
        if s.quantity == Quantity.TIME:
            if s.kind != ShiftKind.ABSOLUTE or not isinstance(s.shape, Parallel):
                v.add(f"{path}.kind", "a time roll is absolute and parallel (years)")
            if s.selector:
                v.add(f"{path}.selector", "a time roll moves the valuation date: no selector")
            return
        if not s.selector:
            v.add(selector, f"required: {TARGET[s.quantity]} id patterns")
        elif ids is not None:
            known = list(ids.get(TARGET[s.quantity], ()))
            if not any(s.matches(x) for x in known):
                v.add(selector, f"{list(s.selector)} matches no {TARGET[s.quantity]} of the base snapshot"
                      + ("" if path.startswith("shifts[") else f" (shift {s.name!r})"))
        # (named as the contract's fields: buckets.tenors, grid.expiries, grid.moneyness)
        shape = f"{path}.buckets" if isinstance(s.shape, Buckets) else f"{path}.grid"
        if isinstance(s.shape, Grid) and s.quantity != Quantity.VOL:
            v.add(shape, "an expiry x moneyness grid shifts vols only")
        if isinstance(s.shape, Buckets) and s.quantity == Quantity.SPOT:
            v.add(shape, "a spot has no term structure: parallel only")
        if s.quantity in HESTON and not isinstance(s.shape, Parallel):
            v.add(shape, "a Heston parameter is one number per trade: parallel only")
        axes = ([("tenors", s.shape.pillars)] if isinstance(s.shape, Buckets)
                else [("expiries", s.shape.expiries), ("moneyness", s.shape.moneyness)] if isinstance(s.shape, Grid)
                else [])
        for name, axis in axes:
            a = np.asarray(axis, dtype=np.float64)
            if a.size == 0:
                v.add(f"{shape}.{name}", "at least one node")
            elif not np.all(np.isfinite(a)) or np.any(a < 0) or (name == "moneyness" and np.any(a <= 0)):
                k = int(np.argmax(~np.isfinite(a) | (a <= 0 if name == "moneyness" else a < 0)))
                v.add(f"{shape}.{name}[{k}]", "finite and " + ("positive" if name == "moneyness" else "non-negative"))
            elif np.any(np.diff(a) <= 0):
                k = int(np.argmax(np.diff(a) <= 0)) + 1
                v.add(f"{shape}.{name}[{k}]", f"strictly increasing; node {k} ({a[k]:g}) is not above node {k - 1}")
        if isinstance(s.shape, Buckets) and s.shape.labels and len(s.shape.labels) != len(s.shape.pillars):
            v.add(f"{shape}.tenors", f"{len(s.shape.labels)} labels for {len(s.shape.pillars)} tenors")


# --------------------------------------------------------------------- historical sets
def _instant(text) -> Optional[_dt.datetime]:
    """An ISO 8601 date (midnight) or RFC 3339 date-time as an aware UTC datetime (no offset:
    UTC), or None when ``text`` is neither."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        t = _dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    return t.replace(tzinfo=_dt.timezone.utc) if t.tzinfo is None else t.astimezone(_dt.timezone.utc)


def historical_sizes(levels: np.ndarray, kinds: Sequence[ShiftKind], dates: Sequence[str], *, holding: int = 1,
                     overlapping: bool = True, prefix: str = "") -> tuple[np.ndarray, tuple[str, ...]]:
    """Scenario sizes from a history of risk-factor levels: ``levels`` (dates x components,
    in time order, one column per component of the shifts), each column's changes over
    ``holding`` dates in the form its shift applies them: ABSOLUTE x(t+h) - x(t), RELATIVE
    x(t+h)/x(t) - 1, LOG ln(x(t+h)/x(t)) (so that applied to today's market the change is
    the one seen then). Overlapping windows start at every date, else every ``holding``
    dates. Returns (components x scenarios sizes, labels "start/end" from ``dates``)."""
    v = Violations()
    a = np.asarray(levels, dtype=np.float64)
    n = len(dates)
    if a.ndim != 2 or a.shape[1] != len(kinds):
        v.add(f"{prefix}levels", f"shape {a.shape}; expected dates x components = ({n}, {len(kinds)})")
    elif a.shape[0] != n:
        v.add(f"{prefix}dates", f"{n} dates for {a.shape[0]} rows of levels")
    if not isinstance(holding, (int, np.integer)) or holding < 1:
        v.add(f"{prefix}holding_period", f"at least 1 date (got {holding!r})")
    v.raise_if_any()
    if n <= holding:
        v.add(f"{prefix}dates", f"{n} dates give no change over a holding period of {holding}")
    when = [_instant(d) for d in dates]
    for i, (d, t) in enumerate(zip(dates, when)):
        if t is None:
            v.add(f"{prefix}dates[{i}]", f"not an ISO 8601 date or RFC 3339 date-time (got {d!r})")
        elif i and when[i - 1] is not None and not t > when[i - 1]:
            v.add(f"{prefix}dates[{i}]", f"{d!r} is not after {dates[i - 1]!r}: the dates must be in time order,"
                                         " each once")
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        v.add(f"{prefix}levels", f"not finite at date {bad[0][0]} ({dates[bad[0][0]]}), component {bad[0][1]}")
    for j, kind in enumerate(kinds):
        if kind == ShiftKind.FIXED:
            v.add(f"{prefix}levels", f"component {j}: a FIXED shift has no change to take from a history")
        elif kind in (ShiftKind.RELATIVE, ShiftKind.LOG) and np.any(a[:, j] <= 0):
            v.add(f"{prefix}levels", f"component {j}: {kind.name.lower()} changes need positive levels")
    v.raise_if_any()
    starts = np.arange(0, n - holding, 1 if overlapping else holding)
    x0, x1 = a[starts], a[starts + holding]
    out = np.empty((len(starts), a.shape[1]))
    with np.errstate(over="ignore"):  # a change that overflows is refused by ScenarioSet.validate, naming the levels
        for j, kind in enumerate(kinds):
            if kind == ShiftKind.ABSOLUTE:
                out[:, j] = x1[:, j] - x0[:, j]
            elif kind == ShiftKind.RELATIVE:
                out[:, j] = x1[:, j] / x0[:, j] - 1.0
            else:
                out[:, j] = np.log(x1[:, j] / x0[:, j])
    labels = tuple(f"{dates[i]}/{dates[i + holding]}" for i in starts)
    return out.T.copy(), labels
