"""MarketClient: put, validate, list, show and delete the market snapshots a server holds.

    from pricegrid.clients import MarketClient

    with MarketClient(target="127.0.0.1:50051") as market:
        info = market.put_snapshot("eod.json")                 # a file (JSON; YAML with PyYAML)
        info = market.put_snapshot({"name": "eod", "asOf": "2026-12-04T17:30:00Z",
                                    "curves": [{"id": "USD-OIS", "currency": "USD",
                                                "nodeTimes": np.array([0.5, 1, 2]),
                                                "values": [0.031, 0.032, 0.033],
                                                "valueKind": "CURVE_VALUE_KIND_ZERO_RATE"}]})
        print(info.id, [f.message for f in info.findings])
        snapshot = market.get_snapshot(info.id)                # (info, dict in the same form)

A snapshot is given as a ``pricegrid.v1.MarketSnapshot`` message, a dict in the protobuf
JSON mapping of that message (the contract's field names, lowerCamelCase or as in the
.proto; numpy arrays and pandas Series are fine where lists are expected), or the path of a
JSON or YAML file holding such a dict. Error-level findings refuse a snapshot
(:class:`PricingError` with code FAILED_PRECONDITION) unless ``force=True`` with a
``reason``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import grpc
import numpy as np
from google.protobuf import json_format

from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc

from . import _tracing
from ._config import USE_CLIENT_DEFAULT, ChannelOptions, RetryConfig, channel_options, resolve_timeout
from ._errors import PricingError
from ._frontoffice import _make_channel

__all__ = ["Finding", "MarketClient", "SnapshotInfo", "grid_surface", "load_snapshot"]


@dataclass(frozen=True)
class Finding:
    """One finding of a quality report: ``severity`` "info", "warning" or "error"."""

    severity: str
    check: str
    field: str
    message: str


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    name: str
    as_of: dt.datetime
    stored_at: dt.datetime | None
    curves: int
    underlyings: int
    heston: int
    description: str
    forced_reason: str
    findings: tuple[Finding, ...]  # empty in list_snapshots (get_snapshot has them)
    created: bool | None = None  # put_snapshot only: False when the same content was stored already
    counts: tuple[int, int] | None = None  # (errors, warnings) of the report; None: count the findings
    surfaces: int = 0  # volatility surfaces
    compared_with: str = ""  # the snapshot of the name its jumps were measured against ("": none)

    @property
    def errors(self) -> int:
        return self.counts[0] if self.counts is not None else sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return self.counts[1] if self.counts is not None else sum(f.severity == "warning" for f in self.findings)


def _plain(value: Any) -> Any:
    """numpy arrays, pandas objects and numpy scalars as plain JSON-able Python values; NaN
    and infinities as the JSON mapping writes them ("NaN", "Infinity"), so that the server
    sees them and names the field, rather than the parser refusing the whole file."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dt.datetime):  # unquoted YAML times; without a zone: UTC (as YAML reads them)
        value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):  # unquoted YAML dates: a Date message
        return {"year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _doubles(values) -> list[float]:
    """A repeated double field's values, NaN and infinities kept as floats (the server names
    the point; _plain's "NaN" strings are for the JSON mapping only)."""
    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()


#: grid_surface's axis names: the contract's StrikeAxis values, lower case without the prefix
_AXES = {v.name.removeprefix("STRIKE_AXIS_").lower(): v.name for v in mpb.StrikeAxis.DESCRIPTOR.values if v.number}


def grid_surface(surface_id: str, underlying: str, vols, *, expiries=None, nodes=None, axis: str = "strike") -> dict:
    """A VolSurface dict (for a snapshot's ``surfaces``) from a grid of vols: a pandas
    DataFrame (index: expiries in years, columns: the axis nodes) or a 2-d array with
    ``expiries`` and ``nodes``. ``axis``: "strike", "moneyness" (K/F), "log_moneyness"
    (ln K/F) or "delta": forward deltas, premium-unadjusted, of a call (N(d1), strictly
    inside (0, 1); a put's delta as the call's, 1 + put delta), in decreasing delta, i.e.
    increasing strike. The server turns each expiry's delta nodes into ln(K/F) at that
    expiry's vols and refuses vols that make the strikes cross.

        >>> grid_surface("SPX-GRID", "SPX", frame, axis="moneyness")
        >>> grid_surface("EURUSD-VOL", "EURUSD", [[0.085, 0.078, 0.075, 0.077, 0.083]], expiries=[0.25],
        ...              nodes=[0.9, 0.75, 0.5, 0.25, 0.1], axis="delta")   # 10P 25P ATM 25C 10C
    """
    if hasattr(vols, "index") and hasattr(vols, "columns"):  # a pandas DataFrame
        expiries = vols.index.to_numpy(dtype=float) if expiries is None else expiries
        nodes = vols.columns.to_numpy(dtype=float) if nodes is None else nodes
        vols = vols.to_numpy(dtype=float)
    grid = np.asarray(vols, dtype=float)
    t, x = np.asarray(expiries, dtype=float), np.asarray(nodes, dtype=float)
    if grid.shape != (len(t), len(x)):
        raise ValueError(f"vols of shape {grid.shape} for {len(t)} expiries x {len(x)} nodes")
    if axis not in _AXES:
        raise ValueError(f"unknown axis {axis!r}; expected one of {list(_AXES)}")
    return {"id": surface_id, "underlying": underlying, "expiries": t.tolist(),
            "grid": {"axis": _AXES[axis], "nodes": x.tolist(), "vols": grid.reshape(-1).tolist()}}


def load_snapshot(source) -> mpb.MarketSnapshot:
    """A MarketSnapshot from a message, a dict (protobuf JSON mapping) or a JSON/YAML file.
    A file that cannot be read, is not JSON/YAML or does not hold a mapping is a ValueError
    naming the path; YAML's unquoted times and dates are read as the mapping's strings and Dates."""
    if isinstance(source, mpb.MarketSnapshot):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read it ({e.strerror or e})" if isinstance(e, OSError)
                             else f"{path}: not text ({e})") from None
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml)") from None
            try:
                source = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not YAML: {e}") from None
        else:
            try:
                source = json.loads(text)
            except ValueError as e:
                raise ValueError(f"{path}: not JSON: {e}") from None
        if not isinstance(source, Mapping):
            what = "nothing" if source is None else f"a {type(source).__name__}"
            raise ValueError(f"{path}: holds {what}, not a snapshot (a mapping of name, asOf, curves, ...)")
    if not isinstance(source, Mapping):
        raise TypeError("a snapshot is a MarketSnapshot, a dict or the path of a JSON/YAML file")
    try:
        return json_format.ParseDict(_plain(source), mpb.MarketSnapshot())
    except json_format.ParseError as e:
        raise ValueError(f"not a MarketSnapshot: {e}") from None


def _when(ts) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.timezone.utc)


def _findings(report) -> tuple[Finding, ...]:
    names = {mpb.SEVERITY_INFO: "info", mpb.SEVERITY_WARNING: "warning", mpb.SEVERITY_ERROR: "error"}
    return tuple(Finding(names.get(f.severity, "info"), f.check, f.field, f.message) for f in report.findings)


def _info(msg, created=None) -> SnapshotInfo:
    return SnapshotInfo(
        msg.id, msg.name, _when(msg.as_of), _when(msg.stored_at) if msg.HasField("stored_at") else None, msg.curves,
        msg.underlyings, msg.heston, msg.description, msg.forced_reason, _findings(msg.report), created,
        (msg.report.errors, msg.report.warnings), msg.surfaces, msg.report.compared_with,
    )


class MarketClient:
    """The MarketDataService of a pricegrid server (keyword-only arguments as
    :class:`FrontOfficeClient`'s: ``target``, ``timeout`` (10 s), ``retries``, ``channel``,
    ``credentials``, ``options``). ``retries`` applies to the reads and evaluations, not to
    put_snapshot and delete_snapshot (``RetryConfig``)."""

    def __init__(
        self,
        *,
        target: str | None = None,
        timeout: float | None = 10.0,
        retries: RetryConfig = RetryConfig(),
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token=None,
        options: ChannelOptions = (),
    ) -> None:
        self.timeout = resolve_timeout(timeout, None)
        self._owns_channel = channel is None
        if channel is None:
            channel = _make_channel(target, credentials, channel_options(retries, extra=options, max_message_bytes=-1), token)
        self._channel = channel
        self._stub = market_pb2_grpc.MarketDataServiceStub(channel)

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=resolve_timeout(timeout, self.timeout), metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None

    def put_snapshot(self, snapshot, *, force: bool = False, reason: str = "", timeout=USE_CLIENT_DEFAULT) -> SnapshotInfo:
        """Validate and store ``snapshot``; its info (id, quality findings, ``created``)."""
        request = mpb.PutSnapshotRequest(snapshot=load_snapshot(snapshot), force=force, reason=reason)
        reply = self._call(self._stub.PutSnapshot, request, timeout)
        return _info(reply.info, reply.created)

    def validate(self, snapshot, *, timeout=USE_CLIENT_DEFAULT) -> tuple[Finding, ...]:
        """The quality findings of ``snapshot`` (nothing is stored)."""
        request = mpb.ValidateMarketRequest(snapshot=load_snapshot(snapshot))
        return _findings(self._call(self._stub.ValidateMarket, request, timeout).report)

    def get_snapshot(self, snapshot_id: str, *, timeout=USE_CLIENT_DEFAULT) -> tuple[SnapshotInfo, dict]:
        """(info, the snapshot as a dict in the protobuf JSON mapping)."""
        reply = self._call(self._stub.GetSnapshot, mpb.GetSnapshotRequest(id=snapshot_id), timeout)
        return _info(reply.info), json_format.MessageToDict(reply.snapshot)

    def list_snapshots(self, name: str = "", *, limit: int = 0, timeout=USE_CLIENT_DEFAULT) -> list[SnapshotInfo]:
        """Stored snapshots, newest as-of first (one name's, if given)."""
        reply = self._call(self._stub.ListSnapshots, mpb.ListSnapshotsRequest(name=name, limit=limit), timeout)
        return [_info(s) for s in reply.snapshots]

    def curve(self, snapshot_id: str, curve_id: str, times, *, timeout=USE_CLIENT_DEFAULT) -> dict:
        """A stored curve at ``times`` (years): numpy arrays ``discount_factors``,
        ``zero_rates`` and ``forward_rates``."""
        request = mpb.EvaluateCurveRequest(snapshot_id=snapshot_id, curve_id=curve_id, times=_doubles(times))
        reply = self._call(self._stub.EvaluateCurve, request, timeout)
        return {name: np.asarray(getattr(reply, name)) for name in ("discount_factors", "zero_rates", "forward_rates")}

    def surface(self, snapshot_id: str, surface_id: str, expiries, strikes, forwards=(), *,
                timeout=USE_CLIENT_DEFAULT) -> dict:
        """A stored surface at points (expiries[i], strikes[i]): numpy arrays ``vols``,
        ``total_variances`` and the ``forwards`` used (the underlying's, unless given)."""
        request = mpb.EvaluateSurfaceRequest(snapshot_id=snapshot_id, surface_id=surface_id,
                                             expiries=_doubles(expiries), strikes=_doubles(strikes),
                                             forwards=_doubles(forwards))
        reply = self._call(self._stub.EvaluateSurface, request, timeout)
        return {name: np.asarray(getattr(reply, name)) for name in ("vols", "total_variances", "forwards")}

    def delete_snapshot(self, snapshot_id: str, *, timeout=USE_CLIENT_DEFAULT) -> str:
        return self._call(self._stub.DeleteSnapshot, mpb.DeleteSnapshotRequest(id=snapshot_id), timeout).id

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "MarketClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
