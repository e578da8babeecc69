"""Kernel status bits -> per-row google.rpc codes and readable row errors naming the field."""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np

from pricegrid.server.pricers import status as st
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, shown
from pricegrid.server.domain.models import Model


#: the service's own status bit, above every kernel bit: the row sets an input its payoff does
#: not read (pricegrid.server.domain.products.UNREAD_INPUTS); its errors come from that table
UNREAD = 1 << 30


class RowError(NamedTuple):
    row: int
    code: int
    field: str
    message: str


def _positive(model: Model) -> bool:
    return model != Model.BACHELIER


def describe(bit: int, model: Model, *, implied_vol: bool = False, product=None) -> str:
    """What the input with this status bit must satisfy, for this model (and product)."""
    name = product.name if product is not None else "european"
    if bit == st.BAD_BARRIER and name == "double_barrier":
        return "must be finite, > 0 and at or below the spot (at it: touched)"
    if bit == st.BAD_BARRIER and name == "touch":
        return "must be finite, > 0 and not beyond the spot (down: at or below, up: at or above; at it: touched)"
    if bit == st.BAD_UPPER_BARRIER:
        return "must be finite, above lower_barrier and at or above the spot (at it: touched)"
    if bit == st.BAD_REBATE and name in ("digital", "touch"):
        return "must be finite and >= 0"
    if bit == st.BAD_FIXINGS:
        return "fixing times must be finite, > 0, increasing and on or before expiry"
    if bit == st.BAD_RUNNING:
        if name == "lookback":
            return "must be finite, > 0 and at most the spot"
        return "must be finite and >= 0 (> 0 for a geometric average once averaging began)"
    if bit == st.BAD_RUNNING_MAX:
        return "must be finite, > 0 and at least the spot"
    if bit == st.BAD_PAST_FIXINGS:
        return "must be >= 0"
    if bit == st.BAD_ELAPSED:
        return "must be finite and >= 0"
    if bit == st.BAD_STRIKE and name == "lookback":
        return "must be finite and > 0 for a fixed strike (>= 0 for a floating one, which does not read it)"
    if bit == st.BAD_PAYOFF_STRIKE:
        return "must be finite and >= 0"
    if bit == st.BAD_MONITORING:
        return "must be finite and >= 0 (0: continuous monitoring)"
    if bit == st.BAD_VARIANT:
        return "unknown enum value"
    if bit == st.BAD_OPTION_TYPE:
        return "must be CALL or PUT"
    if bit in (st.BAD_STRIKE, st.BAD_UNDERLYING):
        return "must be finite and > 0" if _positive(model) else "must be finite"
    if bit == st.BAD_TIME and product is not None and product.max_time is not None:
        return (f"must be finite and in [0, {product.max_time:g}] years (the {name} engines' domain: beyond it"
                " they lose accuracy)")
    if bit == st.BAD_TIME:
        return "must be finite and > 0" if implied_vol else "must be finite and >= 0 (expiry on or after valuation)"
    if bit in (st.BAD_RATE, st.BAD_DIVIDEND):
        return "must be finite"
    if bit == st.BAD_VOL and implied_vol:  # (sent, it is checked, not read: it is solved for)
        return "not read by implied volatility, but must be finite and >= 0 when set"
    if bit == st.BAD_VOL:
        return "must be finite and > 0"
    if bit == st.BAD_PRICE:
        return "must be finite and >= 0"
    if bit == st.PRICE_OUT_OF_BOUNDS:
        return "is outside the no-arbitrage bounds: no volatility reproduces it"
    if bit == st.BAD_BARRIER:
        return "must be finite, > 0 and not beyond the spot (down: at or below, up: at or above; at it: touched)"
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
#: what a valid combination of codes that an engine refuses means, by product
_UNSUPPORTED = {
    "asian": "ENGINE_LEVY prices arithmetic averages on continuous averaging only; use ENGINE_TURNBULL_WAKEMAN or"
             " ENGINE_MONTE_CARLO for discrete fixings",
}


#: valid codes that make no product, by product: ({input: code} that all hold, the input to
#: name, why); the codes are the contract's (common.proto)
_NO_SUCH_PRODUCT = {
    "touch": (({"touch_type": 2, "payment": 1}, "payment",
               "a no-touch (TOUCH_TYPE_NO_TOUCH) pays its cash at expiry, never at a hit: set TOUCH_PAYMENT_AT_EXPIRY"
               " or leave payment unset (TOUCH_PAYMENT_AT_HIT is a one-touch's)"),),
}


def _unsupported(fields: Mapping[str, str], values: Mapping[str, float], product) -> FieldViolation:
    """BAD_VARIANT with every code valid: the combination that makes no product (its input
    named), else the engine's own limit (named by the first code input)."""
    for codes, name, why in _NO_SUCH_PRODUCT.get(product.name, ()):
        if all(values.get(k) == v for k, v in codes.items()):
            return FieldViolation(fields.get(name, name), why)
    first = product.code_inputs[0].name
    return FieldViolation(fields.get(first, first), _UNSUPPORTED.get(product.name, "not priced by this engine"))


def _overflow(model: Model, fields: Mapping[str, str], values: Mapping[str, float], product) -> FieldViolation:
    """NOT_FINITE (no input is out of its domain, the result overflowed): named by the row's
    most extreme input, the one whose magnitude is farthest from 1 in decades (largest
    |log10 |x||; 0 and the enum codes do not count; ties: the first in the product's order),
    with every input of the row listed as the caller named it."""
    codes = {"option_type"} | ({i.name for i in product.code_inputs} if product is not None else set())
    if model == Model.HESTON:  # (its volatility is v0's, not an input)
        codes.add("volatility")
    inputs = [(n, v) for n, v in values.items()
              if n not in codes and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    decades = [abs(math.log10(abs(v))) if v else -1.0 for _, v in inputs]
    name = inputs[decades.index(max(decades))][0] if inputs else ""
    listed = ", ".join(f"{fields.get(n, n)} = {shown(v)}" for n, v in inputs)
    return FieldViolation(fields.get(name, name), f"{describe(st.NOT_FINITE, Model.BLACK_SCHOLES_MERTON)}: this is the"
                                                  f" row's most extreme input (inputs: {listed})")


def violations(
    bits: int, model: Model, fields: Mapping[str, str], values: Mapping[str, float], *, implied_vol=False, product=None
):
    out = []
    for bit in _BITS:
        if bits & bit:
            name = st.FIELD_OF_BIT[bit]
            if bit == st.NOT_FINITE:
                out.append(_overflow(model, fields, values, product))
                continue
            if bit == st.BAD_VARIANT and product is not None:
                # name the code column(s) whose value is not one of its enum's
                found = False
                for inp in product.code_inputs:
                    v = values.get(inp.name)
                    if v is not None and v not in inp.codes:
                        out.append(FieldViolation(fields.get(inp.name, inp.name), f"unknown {inp.enum} value {v}"))
                        found = True
                if not found:  # valid codes in a combination this engine does not price
                    out.append(_unsupported(fields, values, product))
                continue
            if bit == st.BAD_RUNNING and product is not None:
                name = "running_average" if product.name == "asian" else "running_minimum"
            path = fields.get(name, name)
            text = describe(bit, model, implied_vol=implied_vol, product=product)
            if name in values:
                text = f"{text} (got {shown(values[name])})"
            out.append(FieldViolation(path, text))
    return out


def raise_for_status(
    bits: int, model: Model, fields: Mapping[str, str], values: Mapping[str, float], *, implied_vol=False, product=None
):
    """The single-trade path: any bad input is an INVALID_ARGUMENT naming every bad field."""
    found = violations(bits, model, fields, values, implied_vol=implied_vol, product=product)
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
    implied_vol: bool = False,
    product=None,
    unread=(),
) -> list[RowError]:
    """Readable errors for the first ``cap`` failed rows (only those rows are visited);
    ``columns`` holds every input by kernel name (length rows or 1; None when absent);
    ``unread``: (input, rows, why) of the rows marked UNREAD."""
    bad = np.flatnonzero(status_bits)[:cap]
    out: list[RowError] = []
    for row in bad.tolist():
        bits = int(status_bits[row])
        values = {}
        for name, col in columns.items():
            if col is not None and len(col):
                values[name] = col[row if len(col) > 1 else 0].item()
        code = Code.OUT_OF_RANGE if bits == st.NOT_FINITE else Code.INVALID_ARGUMENT
        if bits & UNREAD:
            for name, mask, why in unread:
                if mask[row if len(mask) > 1 else 0]:
                    unset = product.input(name).default
                    out.append(RowError(row, int(code), fields.get(name, name),
                                        f"{why} (got {values.get(name)!r}; a column's unset value is {unset!r})"))
            bits &= ~UNREAD
        for v in violations(bits, model, fields, values, implied_vol=implied_vol, product=product):
            out.append(RowError(row, int(code), v.field, v.description))
    return out
