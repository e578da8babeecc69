"""Responses: domain -> proto, one writer per message.

PriceResponse bytes come from the C codec (fields 1-4) plus the standard error and the
details; PriceBatchResponse is laid out before the kernels run so that they write it in
place (:class:`PriceBatchReply`). The generated-message builders (``price_response``) are
the readable references the writers are tested against.
"""

from __future__ import annotations

import struct

import numpy as np

from pricegrid.server.domain.models import Measure
from pricegrid.server.rpc import _codec
from pricegrid.server.service.pricing import BatchOutputs, BatchResult, ImpliedVolResult, PriceResult
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import wire


def _greeks(result: PriceResult) -> pb.Greeks:
    g = {m.name.lower(): v for m, v in result.greeks.items()}
    if "vega" in g:
        g["vega_per_point"] = g["vega"] / 100.0
    if "theta" in g:
        g["theta_per_day"] = g["theta"] / 365.0
    return pb.Greeks(**g)


_REFS = {}


def model_ref(ref) -> cpb.ModelRef:
    msg = _REFS.get(ref)
    if msg is None:
        msg = _REFS[ref] = cpb.ModelRef(model=ref.model, engine=ref.engine, version=ref.version)
    return msg


def price_response(result: PriceResult) -> pb.PriceResponse:
    """The PriceResponse as a generated message: the readable reference that
    price_response_bytes (the writer used on the wire) is tested against."""
    msg = pb.PriceResponse(
        price=result.price,
        greeks=_greeks(result) if result.greeks else None,
        inputs=pb.EffectiveInputs(
            forward=result.forward,
            discount_factor=result.discount_factor,
            time_to_expiry=result.time_to_expiry,
            volatility=result.volatility,
        ),
        priced_by=model_ref(result.priced_by),
        standard_error=result.standard_error,
    )
    for m, method, se in result.details:
        msg.details.add(measure=int(m), method=int(method), standard_error=se, value=_value(result, m))
    if result.market_used is not None:
        msg.market.CopyFrom(market_used(result.market_used))
    return msg


def _value(result: PriceResult, measure) -> float:
    return result.price if measure == Measure.PRICE else result.greeks[measure]


def market_used(used) -> pb.MarketUsed:
    return pb.MarketUsed(snapshot_id=used.snapshot_id, underlying_id=used.underlying_id,
                         discount_curve=used.discount_curve, dividend_curve=used.dividend_curve,
                         dividends=used.dividends, vol_surface=used.vol_surface)


_GREEK_BITS = {Measure.DELTA: 0, Measure.GAMMA: 1, Measure.VEGA: 2, Measure.THETA: 3, Measure.RHO: 4,
               Measure.DIVIDEND_RHO: 5, Measure.VANNA: 6, Measure.VOLGA: 7, Measure.CHARM: 8}
_REF_BYTES = {}
_DETAIL_BYTES = {}


def _ref_bytes(ref) -> bytes:
    out = _REF_BYTES.get(ref)
    if out is None:
        out = _REF_BYTES[ref] = model_ref(ref).SerializeToString()
    return out


_DOUBLE = struct.Struct("<d")


def _detail_prefix(measure, method, with_se: bool) -> bytes:
    """A PriceResponse.details entry (field 6) up to its value's 8 bytes: tag, length,
    measure, method, [the standard error's tag and bytes go after the value], the value's tag."""
    key = (measure, method, with_se)
    out = _DETAIL_BYTES.get(key)
    if out is None:
        head = b"".join(wire.field_varint(1, int(measure)) + wire.field_varint(2, int(method)))
        size = len(head) + 9 + (9 if with_se else 0)
        out = _DETAIL_BYTES[key] = b"".join([wire.tag(6, 2), wire.varint(size), head, wire.tag(4, 1)])
    return out


def _detail_bytes(measure, method, standard_error: float, value: float) -> bytes:
    """One PriceResponse.details entry (field 6): measure, method, value, standard error."""
    if standard_error == 0.0:
        return _detail_prefix(measure, method, False) + _DOUBLE.pack(value)
    return b"".join([_detail_prefix(measure, method, True), _DOUBLE.pack(value), wire.tag(3, 1),
                     _DOUBLE.pack(standard_error)])


def price_response_bytes(result: PriceResult) -> bytes:
    """The one writer of PriceResponse on the wire: the C codec's fields 1-4, then the
    standard error and the details (same message as price_response)."""
    values = [0.0] * 11
    mask = 0
    for m, v in result.greeks.items():
        i = _GREEK_BITS[m]
        values[i] = v
        mask |= 1 << i
    if mask & 4:  # vega -> vega_per_point
        values[9] = values[2] / 100.0
        mask |= 1 << 9
    if mask & 8:  # theta -> theta_per_day
        values[10] = values[3] / 365.0
        mask |= 1 << 10
    head = _codec.encode_price_response(
        result.price, mask, values, result.forward, result.discount_factor, result.time_to_expiry,
        result.volatility, _ref_bytes(result.priced_by),
    )
    parts = [head]
    if result.standard_error != 0.0:
        parts.append(wire.tag(5, 1) + struct.pack("<d", result.standard_error))
    parts += [_detail_bytes(m, method, se, _value(result, m)) for m, method, se in result.details]
    if result.market_used is not None:
        parts.append(b"".join(wire.field_bytes(7, market_used(result.market_used).SerializeToString())))
    return b"".join(parts)


def implied_vol_response(result: ImpliedVolResult) -> pb.ImpliedVolatilityResponse:
    return pb.ImpliedVolatilityResponse(
        volatility=result.volatility,
        inputs=pb.EffectiveInputs(
            forward=result.forward,
            discount_factor=result.discount_factor,
            time_to_expiry=result.time_to_expiry,
            volatility=result.volatility,
        ),
        priced_by=model_ref(result.priced_by),
    )


# --------------------------------------------------------------------- batch responses, as bytes
# Written straight to the wire format (pricegrid.v1.wire): each column's memory is copied
# once, into the reply, where building the generated message would copy it three times.
def _double_column(values: np.ndarray, raw: bool) -> list:
    # DoubleColumn: field 1 packed doubles or field 2 raw bytes; both are the array's memory
    return wire.field_bytes(2 if raw else 1, np.asarray(values, dtype="<f8"))


def _int32_column(values: np.ndarray, raw: bool) -> list:
    if raw:
        return wire.field_bytes(2, np.asarray(values, dtype="<i4"))
    # packed int32 are varints; row codes are 0..16, one byte each
    return wire.field_bytes(1, np.asarray(values, dtype=np.uint8))


def _inputs_chunks(result: BatchResult, raw: bool) -> list:
    if result.forward is None:
        return []
    columns = (result.forward, result.discount_factor, result.time_to_expiry, result.volatility)
    inner = []
    for number, values in enumerate(columns, 1):
        inner += wire.field_message(number, _double_column(values, raw))
    return wire.field_message(6, inner)


def _common_tail(result: BatchResult, raw: bool, *, inputs: bool = True) -> list:
    # the status column is left out when every row is OK (a million zeros say nothing)
    chunks = wire.field_message(3, _int32_column(result.row_codes, raw)) if result.error_count else []
    for e in result.errors:
        chunks += wire.field_bytes(4, cpb.RowError(row=e.row, code=e.code, field=e.field, message=e.message).SerializeToString())
    chunks += wire.field_varint(5, result.error_count)
    if inputs:
        chunks += _inputs_chunks(result, raw)
    chunks += wire.field_bytes(7, model_ref(result.priced_by).SerializeToString())
    stats = pb.BatchStats(compute_seconds=result.compute_seconds, threads=result.threads, chunks=result.chunks)
    chunks += wire.field_bytes(8, stats.SerializeToString())
    return chunks


_REPLY_TAIL = 256  # room for the fields after the columns when every row is OK (else: one copy)
_PAD = 15  # PriceBatchResponse.alignment_padding


def _filler(size: int) -> bytes | None:
    """A padding field of exactly ``size`` bytes (None when no field is that long)."""
    if size == 0:
        return b""
    for vlen in (1, 2, 3):
        n = size - 1 - vlen
        if n >= 0 and len(wire.varint(n)) == vlen:
            return wire.tag(_PAD, 2) + wire.varint(n) + b"\0" * n
    return None


def _column_header(outer: int, inner_prefix: bytes, field: int, nbytes: int, after: int = 0) -> bytes:
    """Tags and lengths that put an ``nbytes`` payload at outer{inner_prefix, N{field: payload}},
    ``after`` more bytes of the same outer message following the payload."""
    leaf = wire.tag(field, 2) + wire.varint(nbytes)
    column = inner_prefix + wire.varint(len(leaf) + nbytes) + leaf
    return wire.tag(outer, 2) + wire.varint(len(column) + nbytes + after) + column


class PriceBatchReply:
    """The one writer of PriceBatchResponse: the reply laid out before the kernels run.

    Each measure column is MeasureColumn{measure, method, values[, standard_error]}; the
    values payloads, and the forward and discount factor of the effective inputs, are numpy
    views into the reply's own bytes (each on an 8-byte boundary), so the kernels write the
    reply in place. Monte Carlo replies (``stderr``) carry a standard-error payload right
    after each values payload, which cannot be aligned: their measures are computed into
    the service's own arrays and copied in by ``finish``, as the time and volatility
    columns always are. ``finish`` then writes the small fields that depend on the result
    into the reserved tail. ``outputs`` are the arrays to hand the service."""

    def __init__(self, rows: int, measures, raw: bool, effective_inputs: bool, *, methods=(), stderr: bool = False):
        field = 2 if raw else 1  # DoubleColumn.raw or .values (packed): the same bytes
        nbytes = 8 * rows
        leaf = wire.tag(field, 2) + wire.varint(nbytes)
        trailer = wire.tag(4, 2) + wire.varint(len(leaf) + nbytes) + leaf if stderr else b""
        parts: list[tuple[bytes, bytes]] = []  # (header, trailer), in reply order
        for j, m in enumerate(measures):
            prefix = wire.tag(1, 0) + wire.varint(int(m))
            if methods:
                prefix += wire.tag(3, 0) + wire.varint(int(methods[j]))
            after = len(trailer) + nbytes if stderr else 0
            parts.append((_column_header(2, prefix + wire.tag(2, 2), field, nbytes, after), trailer))
        if effective_inputs:
            for number in (1, 2, 3, 4):  # EffectiveInputColumns, one field per occurrence (merged)
                parts.append((_column_header(6, wire.tag(number, 2), field, nbytes), b""))
        self.raw = raw
        head = wire.tag(1, 0) + wire.varint(rows) if rows else b""
        layout = []  # (start, padding + header, values payload offset, trailer)
        offset = len(head)
        for header, tail in parts:
            pad = wire.padding(_PAD, offset + len(header))
            payload = offset + len(pad) + len(header)
            layout.append((offset, pad + header, payload, tail))
            offset = payload + nbytes + (len(tail) + nbytes if tail else 0)
        self.body_end = offset
        self.data, view = _codec.reply_buffer(offset + _REPLY_TAIL)
        self._view = view
        view[: len(head)] = head
        payloads = []
        for start, header, payload, tail in layout:
            view[start : start + len(header)] = header
            if tail:
                view[payload + nbytes : payload + nbytes + len(tail)] = tail
            payloads.append(np.frombuffer(view, dtype="<f8", count=rows, offset=payload) if rows else np.empty(0))
        k = len(measures)
        self._rows = rows
        self._payload_offsets = [payload for _, _, payload, _ in layout[:k]]
        self._trailer = len(trailer)
        self.copy_values = stderr  # Monte Carlo: computed apart, copied in by finish
        if stderr or not rows:
            values = np.empty((k, rows))
        elif k == 1:
            values = payloads[0].reshape(1, rows)
        else:  # the columns are equally far apart: one strided (k, rows) array
            stride = layout[1][2] - layout[0][2]
            values = np.lib.stride_tricks.as_strided(payloads[0], shape=(k, rows), strides=(stride, 8))
        self.inputs = payloads[k:] if effective_inputs else None
        #: the arrays for PricingService.price_batch(outputs=...)
        self.outputs = BatchOutputs(
            values, np.empty((k, rows)) if stderr else None,
            self.inputs[0] if self.inputs else None, self.inputs[1] if self.inputs else None,
        )

    def _bytes_at(self, offset: int, values: np.ndarray) -> None:
        np.frombuffer(self._view, dtype=np.uint8, count=8 * self._rows, offset=offset)[:] = (
            np.ascontiguousarray(values, dtype="<f8").view(np.uint8)
        )

    def finish(self, result: BatchResult) -> bytes:
        if self.inputs is not None:
            np.copyto(self.inputs[2], result.time_to_expiry)
            np.copyto(self.inputs[3], result.volatility)
        if self.copy_values and self._rows:
            for j, offset in enumerate(self._payload_offsets):
                self._bytes_at(offset, result.values[j])
                self._bytes_at(offset + 8 * self._rows + self._trailer, result.stderr[j])
        tail = b"".join(_common_tail(result, self.raw, inputs=False))  # the inputs are in the body
        if result.market_used is not None:  # PriceBatchResponse.market
            tail += b"".join(wire.field_bytes(9, market_used(result.market_used).SerializeToString()))
        filler = _filler(_REPLY_TAIL - len(tail))
        view, data = self._view, self.data
        self._view = self.data = None  # the views must not be written once the bytes are out
        if filler is None:  # the tail did not fit (e.g. a status column): one copy
            return b"".join([view[: self.body_end], tail])
        end = self.body_end + len(tail)
        view[self.body_end : end] = tail
        view[end:] = filler
        return data


def implied_vol_batch_response_bytes(result: BatchResult, encoding: int) -> bytes:
    raw = encoding != cpb.ENCODING_PACKED
    chunks = wire.field_varint(1, result.rows) + wire.field_message(2, _double_column(result.values[0], raw))
    return b"".join(chunks + _common_tail(result, raw))


