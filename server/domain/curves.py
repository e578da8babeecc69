"""Yield curves as market data: nodes, how to read them, and their checks.

A curve is n nodes (t_i, v_i): t_i years ACT/365F from the snapshot's valuation date (the
snapshot's one time axis), strictly increasing and > 0 (t = 0 has discount factor 1
implicitly), v_i continuously compounded zero rates on that axis or discount factors
(``value_kind``), and an interpolation. Nodes given by dates under another day count are
placed on the axis (``axis_nodes``): each keeps its discount factor, so a zero rate z quoted
in the day count becomes z t_dc / t_axis; ``day_count`` only records how the dates were
quoted. For ACT/360 (a linear change of time) that is exactly the curve QuantLib builds in
the day count, between nodes too; for ACT/ACT ISDA and 30/360 it is exact at the nodes and
interpolates on the axis between them. The conventions (interpolation, extrapolation before the first and after the
last node, forwards at the nodes) are the kernel's, written out in the design note of
``ext/curves.pyx``; the codes below are the kernel's codes. Evaluation lives in the pricer
layer (``pricegrid.server.pricers.curves``); this module holds data and checks only.

``YieldCurve.validate()`` reports every violation, each with its field and node index
(``node_times[3]``), the same conditions as the kernel's ``validate_nodes``, so that a curve
that passes here is accepted by the kernel (tests/ext/test_curves_kernel.py checks that the
two agree node by node).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pricegrid.server.domain.daycount import DayCount, to_days, year_fractions
from pricegrid.server.domain.errors import FieldViolation

__all__ = ["Interpolation", "ValueKind", "YieldCurve", "axis_nodes"]


class Interpolation(enum.IntEnum):
    """How a curve is read between its nodes (the codes of pricegrid.ext.curves)."""

    #: ln DF linear in t: piecewise flat instantaneous forwards (the default)
    LOG_LINEAR_DISCOUNT = 1
    #: continuously compounded zero rate linear in t
    LINEAR_ZERO = 2
    #: Hagan & West (2006) monotone convex on discrete forwards
    MONOTONE_CONVEX = 3
    #: the same with Hagan & West's positivity amendment (node forwards collared)
    MONOTONE_CONVEX_POSITIVE = 4


class ValueKind(enum.IntEnum):
    """What the node values are (the codes of pricegrid.ext.curves)."""

    ZERO_RATE = 1        # continuously compounded
    DISCOUNT_FACTOR = 2


#: one curve's nodes (a snapshot over it: RESOURCE_EXHAUSTED, market.Limits.max_curve_nodes)
MAX_NODES = 100_000
_CURRENCY_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def axis_nodes(valuation_day: int, days: np.ndarray, values: np.ndarray, value_kind,
               day_count: DayCount) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(axis times, values on the axis, day-count times) of nodes on dates (epoch days): the
    axis is ACT/365F from the valuation date. Discount factors are kept; a zero rate keeps its
    node's discount factor, z_axis = z_dc t_dc / t_axis (a node not after the valuation date
    keeps its value: validate() refuses its time)."""
    days = np.asarray(days, dtype=np.int64)
    t_dc = year_fractions(valuation_day, days, DayCount(day_count))
    t_axis = (days - valuation_day) / 365.0
    values = np.array(values, dtype=np.float64)
    if value_kind == ValueKind.ZERO_RATE and DayCount(day_count) != DayCount.ACT_365F and values.shape == days.shape:
        ok = t_axis > 0.0
        values[ok] = values[ok] * t_dc[ok] / t_axis[ok]
    return t_axis, values, t_dc


def _enum_or_raw(kind: type[enum.IntEnum], value):
    try:
        return kind(value)
    except (ValueError, TypeError):
        return value  # validate() names it


@dataclass(frozen=True, eq=False)
class YieldCurve:
    """One yield curve. Arrays are copied to read-only float64 on construction."""

    curve_id: str
    currency: str
    day_count: str                      # a DayCount name: "ACT_365F", "ACT_360", ...
    node_times: np.ndarray              # (n,) year fractions, strictly increasing, > 0
    node_values: np.ndarray             # (n,) zero rates or discount factors
    value_kind: ValueKind = ValueKind.DISCOUNT_FACTOR
    interpolation: Interpolation = Interpolation.LOG_LINEAR_DISCOUNT
    _numeric: bool = field(default=True, init=False, repr=False)

    def __post_init__(self) -> None:
        numeric = True
        for name in ("node_times", "node_values"):
            raw = getattr(self, name)
            try:
                column = np.array(raw, dtype=np.float64, copy=True)
            except (TypeError, ValueError):
                column = np.full(len(raw) if hasattr(raw, "__len__") else 0, np.nan)
                numeric = False
            column.setflags(write=False)
            object.__setattr__(self, name, column)
        if isinstance(self.day_count, DayCount):
            object.__setattr__(self, "day_count", self.day_count.name)
        object.__setattr__(self, "value_kind", _enum_or_raw(ValueKind, self.value_kind))
        object.__setattr__(self, "interpolation", _enum_or_raw(Interpolation, self.interpolation))
        object.__setattr__(self, "_numeric", numeric)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dates(
        cls,
        curve_id: str,
        currency: str,
        valuation_date: dt.date,
        dates: Sequence[dt.date],
        values: Sequence[float],
        *,
        day_count: DayCount = DayCount.ACT_365F,
        value_kind: ValueKind = ValueKind.DISCOUNT_FACTOR,
        interpolation: Interpolation = Interpolation.LOG_LINEAR_DISCOUNT,
    ) -> "YieldCurve":
        """A curve on nodes at ``dates`` quoted under ``day_count``, placed on the axis
        (``axis_nodes``: times ACT/365F from ``valuation_date``, each node's discount factor
        kept); dates after the valuation date (validate() says which are not)."""
        days = np.array([to_days(d) for d in dates], dtype=np.int64)
        times, values, _ = axis_nodes(to_days(valuation_date), days, values, value_kind, DayCount(day_count))
        return cls(curve_id, currency, DayCount(day_count).name, times, values, value_kind, interpolation)

    # ------------------------------------------------------------------ checks
    @property
    def size(self) -> int:
        return int(self.node_times.shape[0]) if self.node_times.ndim == 1 else 0

    def validate(self) -> list[FieldViolation]:
        """Every violation, each naming its field (and node index). Empty: the curve is usable."""
        out: list[FieldViolation] = []
        if not isinstance(self.curve_id, str) or not self.curve_id.strip():
            out.append(FieldViolation("curve_id", "empty"))
        if not (isinstance(self.currency, str) and len(self.currency) == 3
                and set(self.currency) <= _CURRENCY_LETTERS):
            out.append(FieldViolation("currency", f"{self.currency!r} is not an ISO 4217 code (3 capital letters)"))
        if self.day_count not in DayCount.__members__:
            out.append(FieldViolation("day_count", f"{self.day_count!r} is not one of {sorted(DayCount.__members__)}"))
        if not isinstance(self.value_kind, ValueKind):
            out.append(FieldViolation("value_kind", f"{self.value_kind!r} is not one of {[k.name for k in ValueKind]}"))
        if not isinstance(self.interpolation, Interpolation):
            out.append(FieldViolation("interpolation",
                                      f"{self.interpolation!r} is not one of {[k.name for k in Interpolation]}"))
        t, v = self.node_times, self.node_values
        if not self._numeric:
            out.append(FieldViolation("node_times", "node times and values must be numbers"))
        if t.ndim != 1 or v.ndim != 1:
            out.append(FieldViolation("node_times" if t.ndim != 1 else "node_values", "not a 1-d array"))
            return out
        n = t.shape[0]
        if v.shape[0] != n:
            out.append(FieldViolation("node_values", f"{v.shape[0]} values for {n} node times"))
            return out
        if n == 0:
            out.append(FieldViolation("node_times", "no nodes; a curve needs at least one"))
            return out
        if n > MAX_NODES:
            out.append(FieldViolation("node_times", f"{n} nodes; at most {MAX_NODES:,}"))
            return out
        out.extend(self._node_violations())
        return out

    def _node_violations(self) -> list[FieldViolation]:
        t, v = self.node_times, self.node_values
        dfs = self.value_kind == ValueKind.DISCOUNT_FACTOR
        t_finite = np.isfinite(t)
        v_finite = np.isfinite(v)
        prev = np.concatenate(([np.nan], t[:-1]))
        both = t_finite & np.isfinite(prev)
        found: dict[int, list[FieldViolation]] = {}

        def add(mask: np.ndarray, name: str, text: str) -> None:
            for i in np.flatnonzero(mask):
                found.setdefault(int(i), []).append(FieldViolation(f"{name}[{int(i)}]", text))

        add(~t_finite, "node_times", "not finite")
        add(t_finite & ~(t > 0.0), "node_times", "not > 0")
        add(both & (t == prev), "node_times", "equal to the previous node's time")
        add(both & (t < prev), "node_times", "below the previous node's time")
        add(~v_finite, "node_values", "not finite")
        if dfs:
            add(v_finite & ~(v > 0.0), "node_values", "discount factor not > 0")
        if not found and isinstance(self.interpolation, Interpolation):
            add(self._overflows(), "node_values",
                "the curve overflows here (rate times time, or a slope, not finite)")
        return [violation for i in sorted(found) for violation in found[i]]

    def _overflows(self) -> np.ndarray:
        """Nodes (all valid) where -ln DF or a segment's slope is not finite, as the kernel."""
        t, v = self.node_times, self.node_values
        with np.errstate(all="ignore"):
            y = -np.log(v) if self.value_kind == ValueKind.DISCOUNT_FACTOR else v * t
            bad = ~np.isfinite(y)
            if bad.any():
                return bad
            x = np.concatenate(([0.0], t))
            slope = np.diff(np.concatenate(([0.0], y))) / np.diff(x)
            bad = ~np.isfinite(slope)
            if self.interpolation == Interpolation.LINEAR_ZERO:
                z = v if self.value_kind == ValueKind.ZERO_RATE else y / t
                dz = np.diff(np.concatenate(([z[0]], z))) / np.diff(x)
                bad |= ~np.isfinite(z) | ~np.isfinite(dz)
                bad[-1] |= not np.isfinite(z[-1] + t[-1] * dz[-1])
            elif self.interpolation in (Interpolation.MONOTONE_CONVEX, Interpolation.MONOTONE_CONVEX_POSITIVE):
                bad |= ~np.isfinite(self._section_gaps(slope))
        return bad

    def _section_gaps(self, fd: np.ndarray) -> np.ndarray:
        """max |g0|, |g1| of each monotone convex section (Hagan & West's node forwards minus
        the section's discrete forward, collared for MONOTONE_CONVEX_POSITIVE), as the kernel
        computes them: a non-finite one makes its section unusable."""
        n = fd.shape[0]
        x = np.concatenate(([0.0], self.node_times))
        if n == 1:
            f = np.array([fd[0], fd[0]])
        else:
            h = np.diff(x)
            f = np.empty(n + 1)
            f[1:n] = h[1:] / (h[1:] + h[:-1]) * fd[:-1] + h[:-1] / (h[1:] + h[:-1]) * fd[1:]
            f[0] = 1.5 * fd[0] - 0.5 * f[1]
            f[n] = 1.5 * fd[-1] - 0.5 * f[n - 1]
        if self.interpolation == Interpolation.MONOTONE_CONVEX_POSITIVE:
            upper = 2.0 * np.concatenate(([fd[0]], np.minimum(fd[:-1], fd[1:]), [fd[-1]]))
            f = np.where(upper > 0.0, np.minimum(np.maximum(f, 0.0), upper), f)
        return np.maximum(np.abs(f[:-1] - fd), np.abs(f[1:] - fd))
