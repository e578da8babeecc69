"""Market snapshots: immutable named sets of curves, underlyings and model parameters.

A :class:`Snapshot` is what ``PutSnapshot`` stores: a name (one market, e.g. "eod-eu"), an
as-of time, a valuation date (times count from it), yield curves, underlyings (a spot or a
futures price, the curve each is discounted on, a dividend-yield curve and cash dividends)
and Heston parameter sets. Its id is a content hash: the SHA-256 of its canonical form
(:meth:`Snapshot.canonical`, JSON with sorted keys and exact float reprs), so the same
content always has the same id and a stored snapshot can never change under its id.

:meth:`Snapshot.validate` reports every structural violation, each naming its field path
(``curves[1].node_times[3]``, ``underlyings[0].discount_curve``), before anything is stored.
The quality gates (forward bounds, staleness, jumps) need the curve kernels and the store:
they live in the service, their findings are :class:`Finding`. Storage is behind
:class:`SnapshotStore`, which the store layer implements (SQLite embedded, PostgreSQL
shared).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, Union

import numpy as np

from pricegrid.server.domain.curves import MAX_NODES as MAX_CURVE_NODES
from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.domain.errors import FieldViolation
from pricegrid.server.domain.surfaces import MAX_EXPIRIES as MAX_SURFACE_EXPIRIES
from pricegrid.server.domain.surfaces import MAX_NODES as MAX_SURFACE_NODES
from pricegrid.server.domain.surfaces import GridSurface, SabrSurface, StrikeAxis, SviSurface

Surface = Union[GridSurface, SviSurface, SabrSurface]

__all__ = [
    "CashDividend", "Finding", "HestonSet", "Limits", "Severity", "Snapshot", "SnapshotStore", "StoredSnapshot",
    "Underlying",
]

#: the canonical form's version: part of every id, bumped if the form ever changes
CANONICAL_VERSION = 1


class Severity(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.Severity``."""

    INFO = 1
    WARNING = 2
    ERROR = 3  # refuses PutSnapshot unless forced with a reason


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # e.g. "curve.forward_bounds", "staleness", "jump.spot"
    field: str  # path inside the snapshot, e.g. "curves[0].values[3]"
    message: str


@dataclass(frozen=True)
class CashDividend:
    time: float  # years from the valuation date to the ex-date
    amount: float


@dataclass(frozen=True)
class Underlying:
    underlying_id: str
    currency: str
    spot: Optional[float] = None
    futures_price: Optional[float] = None
    discount_curve: str = ""
    dividend_curve: str = ""
    dividends: tuple[CashDividend, ...] = ()
    vol_surface: str = ""

    @property
    def level(self) -> Optional[float]:
        return self.spot if self.spot is not None else self.futures_price


@dataclass(frozen=True)
class HestonSet:
    set_id: str
    underlying: str
    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float


@dataclass(frozen=True)
class Limits:
    """Size caps of one snapshot (over them: RESOURCE_EXHAUSTED, nothing stored)."""

    max_curves: int = 1_000
    max_underlyings: int = 10_000
    max_heston: int = 10_000
    max_surfaces: int = 1_000
    max_nodes: int = 2_000_000  # curve nodes, dividends and surface values, summed
    max_text: int = 256  # ids, names, currencies
    max_curve_nodes: int = MAX_CURVE_NODES  # one curve's (its own validate() refuses more too)
    max_surface_expiries: int = MAX_SURFACE_EXPIRIES  # one surface's slices
    max_surface_nodes: int = MAX_SURFACE_NODES  # one grid's strike nodes


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fx(x: float) -> str:
    """A float's exact text (repr round-trips every double)."""
    return repr(float(x))


@dataclass(frozen=True, eq=False)
class Snapshot:
    name: str
    as_of: dt.datetime  # timezone-aware
    valuation_date: dt.date
    curves: tuple[YieldCurve, ...] = ()
    underlyings: tuple[Underlying, ...] = ()
    heston: tuple[HestonSet, ...] = ()
    description: str = ""
    surfaces: tuple[Surface, ...] = ()
    _index: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "curves", tuple(self.curves))
        object.__setattr__(self, "underlyings", tuple(self.underlyings))
        object.__setattr__(self, "heston", tuple(self.heston))
        object.__setattr__(self, "surfaces", tuple(self.surfaces))

    # ------------------------------------------------------------------ lookups
    def curve(self, curve_id: str) -> Optional[YieldCurve]:
        return self._lookup("curves", "curve_id", curve_id)

    def underlying(self, underlying_id: str) -> Optional[Underlying]:
        return self._lookup("underlyings", "underlying_id", underlying_id)

    def heston_set(self, set_id: str) -> Optional[HestonSet]:
        return self._lookup("heston", "set_id", set_id)

    def surface(self, surface_id: str) -> Optional[Surface]:
        return self._lookup("surfaces", "surface_id", surface_id)

    def _lookup(self, what: str, key: str, value: str):
        index = self._index.get(what)
        if index is None:
            index = self._index[what] = {getattr(x, key): x for x in getattr(self, what)}
        return index.get(value)

    @property
    def size(self) -> int:
        """Curve nodes, dividends and surface values: what the size cap counts."""
        return (sum(c.size for c in self.curves) + sum(len(u.dividends) for u in self.underlyings)
                + sum(_surface_values(x).size for x in self.surfaces))

    # ------------------------------------------------------------------ checks
    def check_size(self, limits: Limits) -> list[FieldViolation]:
        out = []
        for what, cap in (("curves", limits.max_curves), ("underlyings", limits.max_underlyings),
                          ("heston", limits.max_heston), ("surfaces", limits.max_surfaces)):
            if len(getattr(self, what)) > cap:
                out.append(FieldViolation(what, f"{len(getattr(self, what))} entries; at most {cap:,}"))
        for i, c in enumerate(self.curves):
            if np.size(c.node_times) > limits.max_curve_nodes:
                out.append(FieldViolation(f"curves[{i}].node_times", f"{np.size(c.node_times):,} nodes; at most"
                                                                     f" {limits.max_curve_nodes:,}"))
        for i, x in enumerate(self.surfaces):
            if np.size(x.expiries) > limits.max_surface_expiries:
                out.append(FieldViolation(f"surfaces[{i}].expiries", f"{np.size(x.expiries):,} expiries; at most"
                                                                     f" {limits.max_surface_expiries:,}"))
            if isinstance(x, GridSurface) and np.size(x.nodes) > limits.max_surface_nodes:
                out.append(FieldViolation(f"surfaces[{i}].grid.nodes", f"{np.size(x.nodes):,} nodes; at most"
                                                                       f" {limits.max_surface_nodes:,}"))
        if self.size > limits.max_nodes:
            # named where most of them are: the largest curve, dividend list or surface
            sizes = ([(np.size(c.node_times), f"curves[{i}]") for i, c in enumerate(self.curves)]
                     + [(len(u.dividends), f"underlyings[{i}].dividends") for i, u in enumerate(self.underlyings)]
                     + [(_surface_values(x).size, f"surfaces[{i}]") for i, x in enumerate(self.surfaces)])
            most, where = max(sizes)
            out.append(FieldViolation(where, f"{most:,} values here, {self.size:,} in the snapshot (curve nodes,"
                                             f" dividends and surface values, summed); at most {limits.max_nodes:,}"))
        return out

    def validate(self, limits: Limits = Limits()) -> list[FieldViolation]:
        """Every structural violation, each naming its field path. Empty: storable."""
        out: list[FieldViolation] = []

        def text(path: str, value, required: bool = True) -> None:
            if not isinstance(value, str) or (required and not value.strip()):
                out.append(FieldViolation(path, "required"))
            elif len(value) > limits.max_text:
                out.append(FieldViolation(path, f"{len(value)} characters; at most {limits.max_text}"))

        text("name", self.name)
        if len(self.description) > 4 * limits.max_text:
            out.append(FieldViolation("description", f"at most {4 * limits.max_text} characters"))
        if not isinstance(self.as_of, dt.datetime) or self.as_of.tzinfo is None:
            out.append(FieldViolation("as_of", "required: a time with its time zone"))
        if not isinstance(self.valuation_date, dt.date):
            out.append(FieldViolation("valuation_date", "required"))
        ids: dict[str, int] = {}
        for i, c in enumerate(self.curves):
            path = f"curves[{i}]"
            if c.curve_id in ids:
                out.append(FieldViolation(f"{path}.id", f"{c.curve_id!r} also names curves[{ids[c.curve_id]}]"))
            ids.setdefault(c.curve_id, i)
            text(f"{path}.id", c.curve_id, required=False)  # (empty: the curve's own check)
            for v in c.validate():
                name = {"curve_id": "id", "node_values": "values"}.get(v.field.split("[")[0], v.field.split("[")[0])
                rest = v.field[len(v.field.split("[")[0]):]
                out.append(FieldViolation(f"{path}.{name}{rest}", v.description))
        surfaces: dict[str, int] = {}
        for i, x in enumerate(self.surfaces):
            path = f"surfaces[{i}]"
            if x.surface_id in surfaces:
                out.append(FieldViolation(f"{path}.id", f"{x.surface_id!r} also names surfaces[{surfaces[x.surface_id]}]"))
            surfaces.setdefault(x.surface_id, i)
            text(f"{path}.id", x.surface_id, required=False)  # (empty: the surface's own check)
            text(f"{path}.underlying", x.underlying_id, required=False)
            found = x.validate() or x.check_bounds()  # (bounds: only of a surface the kernel accepts)
            out.extend(FieldViolation(f"{path}.{_surface_path(x, v.field)}", v.description) for v in found)
        seen: dict[str, int] = {}
        for i, u in enumerate(self.underlyings):
            path = f"underlyings[{i}]"
            text(f"{path}.id", u.underlying_id)
            if u.underlying_id in seen:
                out.append(FieldViolation(f"{path}.id", f"{u.underlying_id!r} also names underlyings[{seen[u.underlying_id]}]"))
            seen.setdefault(u.underlying_id, i)
            if not (isinstance(u.currency, str) and len(u.currency) == 3 and u.currency.isalpha() and u.currency.isupper()):
                out.append(FieldViolation(f"{path}.currency", f"{u.currency!r} is not an ISO 4217 code (3 capital letters)"))
            if (u.spot is None) == (u.futures_price is None):
                out.append(FieldViolation(f"{path}.spot", "set spot or futures_price (one of them)"))
            for name in ("spot", "futures_price"):
                value = getattr(u, name)
                if value is not None and not (_finite(value) and value > 0):
                    out.append(FieldViolation(f"{path}.{name}", f"must be finite and > 0 (got {value!r})"))
            for name in ("discount_curve", "dividend_curve"):
                ref = getattr(u, name)
                if ref and ref not in ids:
                    out.append(FieldViolation(f"{path}.{name}", f"no curve {ref!r} in this snapshot"))
            if not u.discount_curve:
                out.append(FieldViolation(f"{path}.discount_curve", "required: the id of a curve of this snapshot"))
            previous = -math.inf
            for j, d in enumerate(u.dividends):
                dpath = f"{path}.dividends[{j}]"
                if not (_finite(d.time) and d.time > 0):
                    out.append(FieldViolation(f"{dpath}.time", f"must be finite and > 0 (got {d.time!r}): a dividend"
                                                               " going ex on or before the valuation date is not a"
                                                               " future cash flow (set time or date; leave past ones"
                                                               " out)"))
                elif d.time < previous:
                    out.append(FieldViolation(f"{dpath}.time", "dividends must be in time order"))
                else:
                    previous = d.time
                if not (_finite(d.amount) and d.amount >= 0):
                    out.append(FieldViolation(f"{dpath}.amount", f"must be finite and >= 0 (got {d.amount!r})"))
            if u.vol_surface and u.vol_surface not in surfaces:
                out.append(FieldViolation(f"{path}.vol_surface", f"no surface {u.vol_surface!r} in this snapshot"))
            if u.futures_price is not None and (u.dividends or u.dividend_curve):
                out.append(FieldViolation(f"{path}.dividends", "a futures price carries no dividends"))
        hs: dict[str, int] = {}
        for i, h in enumerate(self.heston):
            path = f"heston[{i}]"
            text(f"{path}.id", h.set_id)
            if h.set_id in hs:
                out.append(FieldViolation(f"{path}.id", f"{h.set_id!r} also names heston[{hs[h.set_id]}]"))
            hs.setdefault(h.set_id, i)
            if h.underlying and h.underlying not in seen:
                out.append(FieldViolation(f"{path}.underlying", f"no underlying {h.underlying!r} in this snapshot"))
            p = f"{path}.parameters"
            if not (_finite(h.v0) and h.v0 >= 0):
                out.append(FieldViolation(f"{p}.v0", f"must be finite and >= 0 (got {h.v0!r})"))
            for name in ("kappa", "theta", "sigma"):
                value = getattr(h, name)
                if not (_finite(value) and value > 0):
                    out.append(FieldViolation(f"{p}.{name}", f"must be finite and > 0 (got {value!r})"))
            if not (_finite(h.rho) and -1 < h.rho < 1):
                out.append(FieldViolation(f"{p}.rho", f"must be finite and in (-1, 1) (got {h.rho!r})"))
        for i, x in enumerate(self.surfaces):
            if x.underlying_id and x.underlying_id not in seen:
                out.append(FieldViolation(f"surfaces[{i}].underlying", f"no underlying {x.underlying_id!r} in this snapshot"))
        return out

    # ------------------------------------------------------------------ identity
    def canonical(self) -> dict:
        """The content as JSON-ready data with exact float texts: what the id hashes and
        what the store keeps (``from_canonical`` reads it back). Fields added after the
        first version appear only when set, so a snapshot that does not use them keeps its id."""
        return {
            "version": CANONICAL_VERSION,
            "name": self.name,
            "as_of": self.as_of.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
            "valuation_date": self.valuation_date.isoformat(),
            "description": self.description,
            "curves": [
                {
                    "id": c.curve_id, "currency": c.currency, "day_count": str(c.day_count),
                    "times": [_fx(x) for x in c.node_times], "values": [_fx(x) for x in c.node_values],
                    "value_kind": ValueKind(c.value_kind).name, "interpolation": Interpolation(c.interpolation).name,
                }
                for c in self.curves
            ],
            "underlyings": [
                {
                    "id": u.underlying_id, "currency": u.currency,
                    "spot": None if u.spot is None else _fx(u.spot),
                    "futures_price": None if u.futures_price is None else _fx(u.futures_price),
                    "discount_curve": u.discount_curve, "dividend_curve": u.dividend_curve,
                    "dividends": [[_fx(d.time), _fx(d.amount)] for d in u.dividends],
                    **({"vol_surface": u.vol_surface} if u.vol_surface else {}),
                }
                for u in self.underlyings
            ],
            **({"surfaces": [_surface_canonical(x) for x in self.surfaces]} if self.surfaces else {}),
            "heston": [
                {"id": h.set_id, "underlying": h.underlying,
                 "parameters": [_fx(h.v0), _fx(h.kappa), _fx(h.theta), _fx(h.sigma), _fx(h.rho)]}
                for h in self.heston
            ],
        }

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def content_id(self) -> str:
        """The snapshot's id: 32 hex digits of the SHA-256 of its canonical form."""
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()[:32]

    @classmethod
    def from_canonical(cls, data: dict) -> "Snapshot":
        if data.get("version") != CANONICAL_VERSION:
            raise ValueError(f"unknown snapshot form version {data.get('version')!r}")
        f = float
        curves = tuple(
            YieldCurve(c["id"], c["currency"], c["day_count"], np.array([f(x) for x in c["times"]]),
                       np.array([f(x) for x in c["values"]]), ValueKind[c["value_kind"]],
                       Interpolation[c["interpolation"]])
            for c in data["curves"]
        )
        underlyings = tuple(
            Underlying(u["id"], u["currency"], None if u["spot"] is None else f(u["spot"]),
                       None if u["futures_price"] is None else f(u["futures_price"]), u["discount_curve"],
                       u["dividend_curve"], tuple(CashDividend(f(t), f(a)) for t, a in u["dividends"]),
                       u.get("vol_surface", ""))
            for u in data["underlyings"]
        )
        surfaces = tuple(_surface_from(x) for x in data.get("surfaces", ()))
        heston = tuple(HestonSet(h["id"], h["underlying"], *(f(x) for x in h["parameters"])) for h in data["heston"])
        return cls(data["name"], dt.datetime.fromisoformat(data["as_of"]), dt.date.fromisoformat(data["valuation_date"]),
                   curves, underlyings, heston, data.get("description", ""), surfaces)


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot as the store holds it. ``snapshot`` is None in listings (summary only)."""

    snapshot_id: str
    name: str
    as_of: dt.datetime
    stored_at: dt.datetime
    counts: tuple[int, int, int, int]  # curves, underlyings, heston sets, surfaces
    description: str
    forced_reason: str
    findings: tuple[Finding, ...]
    snapshot: Optional[Snapshot] = None
    compared_with: str = ""  # the snapshot of the name its jumps were measured against ("": none)


def _surface_values(x: Surface) -> np.ndarray:
    return x.vols if isinstance(x, GridSurface) else x.params


_KINDS = {GridSurface: "grid", SviSurface: "svi", SabrSurface: "sabr"}


def _surface_path(x: Surface, domain_field: str) -> str:
    """A surface violation's field as the contract names it (VolSurface)."""
    head = domain_field.split("[")[0].split(".")[0]
    rest = domain_field[len(head):]
    if head == "surface_id":
        return "id" + rest
    if head == "underlying_id":
        return "underlying" + rest
    if head == "expiries":
        return domain_field
    kind = _KINDS[type(x)]
    if kind == "grid" and head == "vols" and rest.count("[") == 2:  # vols[i][j] -> the row-major index
        i, j = (int(part.strip("]")) for part in rest.strip("[").split("]["))
        return f"grid.vols[{i * x.nodes.shape[0] + j}]"
    if head == "params":  # params[i].rho -> svi.slices[i].rho
        return f"{kind}.slices{rest}"
    return f"{kind}.{domain_field}"


def _surface_canonical(x: Surface) -> dict:
    out = {"id": x.surface_id, "underlying": x.underlying_id, "kind": _KINDS[type(x)],
           "expiries": [_fx(t) for t in x.expiries]}
    if isinstance(x, GridSurface):
        out.update(axis=StrikeAxis(x.axis).name, nodes=[_fx(v) for v in x.nodes],
                   vols=[[_fx(v) for v in row] for row in x.vols])
    else:
        out["params"] = [[_fx(v) for v in row] for row in x.params]
    return out


def _surface_from(d: dict) -> Surface:
    f = float
    t = np.array([f(v) for v in d["expiries"]])
    if d["kind"] == "grid":
        return GridSurface(d["id"], d["underlying"], t, StrikeAxis[d["axis"]], np.array([f(v) for v in d["nodes"]]),
                           np.array([[f(v) for v in row] for row in d["vols"]]).reshape(len(t), len(d["nodes"])))
    cls = SviSurface if d["kind"] == "svi" else SabrSurface
    return cls(d["id"], d["underlying"], t, np.array([[f(v) for v in row] for row in d["params"]]))


class SnapshotStore(Protocol):
    """Where snapshots persist (pricegrid.server.store implements it)."""

    def put(self, record: StoredSnapshot) -> bool:
        """Store ``record`` (with its snapshot); False when its id is already stored."""

    def get(self, snapshot_id: str) -> Optional[StoredSnapshot]:
        """The record with its snapshot, or None."""

    def list(self, name: str = "", limit: int = 100) -> Sequence[StoredSnapshot]:
        """Summaries (no snapshot), newest as-of first."""

    def latest(self, name: str, before: dt.datetime, exclude: str = "") -> Optional[StoredSnapshot]:
        """The newest record of ``name`` (as-of, then stored_at) with as-of at or before
        ``before`` and an id other than ``exclude``, with its snapshot."""

    def delete(self, snapshot_id: str) -> bool:
        """False when there was no such id."""

    def exists(self, snapshot_id: str, timeout: Optional[float] = None) -> bool:
        """Whether the id is stored (a cache's check that no other replica deleted it).
        ``timeout``: the longest wait for a connection, where the store has a pool (None:
        the store's own); past it, UNAVAILABLE."""
