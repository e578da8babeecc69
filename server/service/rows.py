"""Kernel status bits -> per-row google.rpc codes and readable row errors naming the field."""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from pricegrid.ext import status as st
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError
from pricegrid.server.domain.models import Model


class RowError(NamedTuple):
    row: int
    code: int
    field: str
    message: str


def _positive(model: Model) -> bool:
    return model != Model.BACHELIER


def describe(bit: int, model: Model, *, implied_vol: bool = False) -> str:
    """What the input with this status bit must satisfy, for this model."""
    if bit == st.BAD_OPTION_TYPE:
        return "must be CALL or PUT"
    if bit in (st.BAD_STRIKE, st.BAD_UNDERLYING):
        return "must be finite and > 0" if _positive(model) else "must be finite"
    if bit == st.BAD_TIME:
        return "must be finite and > 0" if implied_vol else "must be finite and >= 0 (expiry on or after valuation)"
    if bit in (st.BAD_RATE, st.BAD_DIVIDEND):
        return "must be finite"
    if bit == st.BAD_VOL:
        return "must be finite and > 0"
    if bit == st.BAD_PRICE:
        return "must be finite and >= 0"
    if bit == st.PRICE_OUT_OF_BOUNDS:
        return "is outside the no-arbitrage bounds: no volatility reproduces it"
    if bit == st.BAD_BARRIER:
        return "must be finite, > 0 and on the barrier's side of spot (down: below, up: above)"
    if bit == st.BAD_REBATE:
        return "must be finite and >= 0"
    if bit == st.BAD_HESTON_V0:
        return "must be finite and >= 0"
    if bit in (st.BAD_HESTON_KAPPA, st.BAD_HESTON_THETA, st.BAD_HESTON_SIGMA):
        return "must be finite and > 0"
    if bit == st.BAD_HESTON_RHO:
        return "must be finite and in (-1, 1)"
    if bit == st.NOT_FINITE:
        return "the result is not finite for these inputs (overflow)"
    return "is invalid"


_BITS = tuple(sorted(st.FIELD_OF_BIT))


def violations(bits: int, model: Model, fields: Mapping[str, str], values: Mapping[str, float], *, implied_vol=False):
    out = []
    for bit in _BITS:
        if bits & bit:
            name = st.FIELD_OF_BIT[bit]
            path = fields.get(name, name)
            text = describe(bit, model, implied_vol=implied_vol)
            if name in values:
                text = f"{text} (got {values[name]!r})"
            out.append(FieldViolation(path, text))
    return out


def raise_for_status(bits: int, model: Model, fields: Mapping[str, str], values: Mapping[str, float], *, implied_vol=False):
    """The single-trade path: any bad input is an INVALID_ARGUMENT naming every bad field."""
    found = violations(bits, model, fields, values, implied_vol=implied_vol)
    code = Code.OUT_OF_RANGE if bits == st.NOT_FINITE else Code.INVALID_ARGUMENT
    message = "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in found)
    raise ServiceError(code, message, found)


def row_codes(status_bits: np.ndarray) -> np.ndarray:
    """google.rpc.Code per row: 0 OK, 11 OUT_OF_RANGE for overflow only, else 3 INVALID_ARGUMENT."""
    codes = np.where(status_bits == 0, 0, int(Code.INVALID_ARGUMENT)).astype(np.int32)
    codes[status_bits == st.NOT_FINITE] = int(Code.OUT_OF_RANGE)
    return codes


def row_errors(
    status_bits: np.ndarray,
    model: Model,
    fields: Mapping[str, str],
    columns: Mapping[str, np.ndarray],
    *,
    cap: int,
    row_offset: int = 0,
    implied_vol: bool = False,
) -> list[RowError]:
    """Readable errors for the first ``cap`` failed rows (only those rows are visited)."""
    bad = np.flatnonzero(status_bits)[:cap]
    out: list[RowError] = []
    for row in bad.tolist():
        bits = int(status_bits[row])
        values = {}
        for name, col in columns.items():
            if col is not None:
                values[name] = col[row if len(col) > 1 else 0].item()
        for v in violations(bits, model, fields, values, implied_vol=implied_vol):
            code = Code.OUT_OF_RANGE if bits == st.NOT_FINITE else Code.INVALID_ARGUMENT
            out.append(RowError(row + row_offset, int(code), v.field, v.description))
    return out
