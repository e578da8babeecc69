"""The front office's lean path: PriceRequest bytes -> PriceResponse bytes.

For the common shape of a European trade under Black-Scholes-Merton, Black-76 or Bachelier
(a year-fraction expiry, the model's own underlying, inline market data), the C codec reads
the request, the analytic European engine's one-row kernel entry prices it and the C codec
writes the reply: no message object is built. Anything else, including every bad input,
steps aside to the one path (requests -> PricingService.price -> responses), which gives the
same numbers bit for bit (tests/server/test_codec.py).
"""

from __future__ import annotations

from pricegrid.server.domain.models import OPTION_MEASURES, Measure
from pricegrid.server.rpc import _codec
from pricegrid.server.rpc.responses import _detail_prefix, _ref_bytes

_LEAN_TAILS = {}  # (model code, measures mask) -> (ModelRef bytes, details bytes)


def price_lean(data, service) -> bytes | None:
    """The front-office path: PriceRequest bytes -> PriceResponse bytes through the C codec
    and the kernel, no objects built; None when the request is not of that shape or a value
    is out of the model's domain (the full path then prices it or words the error)."""
    lean = price_lean_ref(data, service)
    return None if lean is None else lean[0]


def price_lean_ref(data, service, cid: bytes | None = None):
    """:func:`price_lean`, with the engine that priced: (reply bytes, ModelRef) or None. With
    ``cid`` the reply is the PriceStreamResponse a stream message with no trade id gets
    (correlation_id = ``cid``, result = the PriceResponse), written in the same C call."""
    args = _codec.lean_price_args(data)
    if args is None:
        return None
    out, spec = service.price_fast(*args)
    if out[0]:
        return None
    mask = args[8]
    tail = _LEAN_TAILS.get((args[0], mask))  # the model's code names its analytic European engine
    if tail is None:  # priced_by, and each measure's detail up to its value (slot in the kernel's tuple)
        measures = (Measure.PRICE,) + tuple(m for m in OPTION_MEASURES[1:] if mask >> int(m) & 1)
        details = tuple((_detail_prefix(m, spec.methods[m], False), 2 + int(m)) for m in measures)
        tail = _LEAN_TAILS[(args[0], mask)] = (_ref_bytes(spec.ref), details)
    return _codec.encode_lean_reply(out, mask, args[3], args[7], tail[0], tail[1], cid), spec.ref
