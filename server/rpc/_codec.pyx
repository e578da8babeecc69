# cython: language_level=3
"""The front-office hot path's wire codec: PriceRequest in, PriceResponse out, in C; and the
batch requests' reader (``read_view``, note 4 below the front-office code).

1. Why: on a loopback unary call of ~0.5 ms, building and reading nested upb messages from
   Python costs tens of microseconds per call (cold caches between calls); this module reads
   a PriceRequest and writes a PriceResponse in about a microsecond each.
2. Scope: the shape front-office callers send (one European option, inline market, any
   measures). Anything else — an unknown or repeated sub-message, a wire type that does
   not match, a truncated field — returns None from ``decode_price_request`` and the caller
   takes the generated code's path, which also produces the error messages. So this module
   never decides that a request is invalid; it only recognises the common valid shape.
3. Encoding follows https://protobuf.dev/programming-guides/encoding/: varints for enums,
   fixed64 for doubles, length-delimited sub-messages. tests/server/test_codec.py checks both
   directions against the generated code on random and hand-made messages.
"""

from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

cdef struct Reader:
    const unsigned char *p
    const unsigned char *end
    bint ok


cdef inline unsigned long long read_varint(Reader *r) noexcept nogil:
    cdef unsigned long long result = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if r.p >= r.end or shift > 63:
            r.ok = False
            return 0
        b = r.p[0]
        r.p += 1
        result |= (<unsigned long long>(b & 0x7F)) << shift
        if b < 0x80:
            return result
        shift += 7


cdef inline double read_double(Reader *r) noexcept nogil:
    cdef double v = 0.0
    if r.end - r.p < 8:
        r.ok = False
        return 0.0
    memcpy(&v, r.p, 8)
    r.p += 8
    return v


cdef inline int as_int32(unsigned long long v) noexcept nogil:
    return <int>(<unsigned int>(v & 0xFFFFFFFFULL))


cdef inline bint sub(Reader *r, Reader *inner) noexcept nogil:
    """Enter a length-delimited field: ``inner`` spans it, ``r`` moves past it."""
    cdef unsigned long long n = read_varint(r)
    if not r.ok or n > <unsigned long long>(r.end - r.p):
        r.ok = False
        return False
    inner.p = r.p
    inner.end = r.p + n
    inner.ok = True
    r.p += n
    return True


cdef object read_date(Reader *r):
    cdef unsigned long long key
    cdef int y = 0, m = 0, d = 0
    while r.ok and r.p < r.end:
        key = read_varint(r)
        if key == 0x08:
            y = as_int32(read_varint(r))
        elif key == 0x10:
            m = as_int32(read_varint(r))
        elif key == 0x18:
            d = as_int32(read_varint(r))
        else:
            r.ok = False
    return (y, m, d)


def decode_price_request(const unsigned char[::1] data):
    """A PriceRequest's fields as a flat tuple, or None to use the generated code:

    (model, has_european, option_type, strike, expiry_kind, year_fraction, valuation_date,
     expiry_date, day_count, underlying_kind, underlying, rate, dividend_yield, volatility,
     measures)

    expiry_kind: 0 unset, 1 year_fraction, 2 dates; dates are (y, m, d) or None;
    underlying_kind: 0 unset, 1 spot, 2 forward.
    """
    cdef Reader r, e, x, dts, mk, ms
    cdef unsigned long long key
    cdef int model = 0, option_type = 0, expiry_kind = 0, day_count = 0, und_kind = 0
    cdef double strike = 0.0, yf = 0.0, und = 0.0, rate = 0.0, q = 0.0, vol = 0.0
    cdef bint has_european = False, has_market = False, has_expiry = False, has_dates = False
    cdef object valuation = None, expiry = None
    measures = []
    if data.shape[0] == 0:
        r.p = NULL
        r.end = NULL
    else:
        r.p = &data[0]
        r.end = &data[0] + data.shape[0]
    r.ok = True
    while r.ok and r.p < r.end:
        key = read_varint(&r)
        if key == 0x08:                                   # 1 model
            model = as_int32(read_varint(&r))
        elif key == 0x12:                                 # 2 european
            if has_european or not sub(&r, &e):
                return None
            has_european = True
            while e.ok and e.p < e.end:
                key = read_varint(&e)
                if key == 0x08:                           # option_type
                    option_type = as_int32(read_varint(&e))
                elif key == 0x11:                         # strike
                    strike = read_double(&e)
                elif key == 0x1a:                         # expiry
                    if has_expiry or not sub(&e, &x):
                        return None
                    has_expiry = True
                    while x.ok and x.p < x.end:
                        key = read_varint(&x)
                        if key == 0x09:                   # year_fraction
                            yf = read_double(&x)
                            expiry_kind = 1
                        elif key == 0x12:                 # dates
                            if has_dates or not sub(&x, &dts):
                                return None
                            has_dates = True
                            expiry_kind = 2
                            while dts.ok and dts.p < dts.end:
                                key = read_varint(&dts)
                                if key == 0x0a:
                                    if valuation is not None or not sub(&dts, &mk):
                                        return None
                                    valuation = read_date(&mk)
                                    if not mk.ok:
                                        return None
                                elif key == 0x12:
                                    if expiry is not None or not sub(&dts, &mk):
                                        return None
                                    expiry = read_date(&mk)
                                    if not mk.ok:
                                        return None
                                elif key == 0x18:
                                    day_count = as_int32(read_varint(&dts))
                                else:
                                    return None
                            if not dts.ok:
                                return None
                        else:
                            return None
                    if not x.ok:
                        return None
                else:
                    return None
            if not e.ok:
                return None
        elif key == 0x1a:                                 # 3 market
            if has_market or not sub(&r, &mk):
                return None
            has_market = True
            while mk.ok and mk.p < mk.end:
                key = read_varint(&mk)
                if key == 0x09:
                    und = read_double(&mk)
                    und_kind = 1
                elif key == 0x11:
                    und = read_double(&mk)
                    und_kind = 2
                elif key == 0x19:
                    rate = read_double(&mk)
                elif key == 0x21:
                    q = read_double(&mk)
                elif key == 0x29:
                    vol = read_double(&mk)
                else:
                    return None                           # snapshot_id and unknowns: slow path
            if not mk.ok:
                return None
        elif key == 0x22:                                 # 4 measures, packed
            if not sub(&r, &ms):
                return None
            while ms.ok and ms.p < ms.end:
                measures.append(as_int32(read_varint(&ms)))
            if not ms.ok:
                return None
        elif key == 0x20:                                 # 4 measures, one at a time
            measures.append(as_int32(read_varint(&r)))
        else:
            return None
    if not r.ok:
        return None
    return (model, has_european, option_type, strike, expiry_kind, yf, valuation, expiry, day_count,
            und_kind, und, rate, q, vol, measures)


cdef inline unsigned char *put_double(unsigned char *p, unsigned char key, double v) noexcept nogil:
    p[0] = key
    memcpy(p + 1, &v, 8)
    return p + 9


cdef inline unsigned char *put_len(unsigned char *p, unsigned char key, Py_ssize_t n) noexcept nogil:
    p[0] = key
    p += 1
    while n >= 0x80:
        p[0] = <unsigned char>((n & 0x7F) | 0x80)
        n >>= 7
        p += 1
    p[0] = <unsigned char>n
    return p + 1


cdef unsigned char *write_price(unsigned char *p, double price, int greeks_mask, const double *greeks,
                                double forward, double discount_factor, double time_to_expiry, double volatility,
                                const char *ref, Py_ssize_t n_ref) noexcept nogil:
    """A PriceResponse's fields 1-4 at ``p`` (at most 9 + 2 + 99 + 2 + 36 + 3 + n_ref bytes)."""
    cdef int i, count = 0
    p = put_double(p, 0x09, price)                            # 1 price
    for i in range(11):
        if greeks_mask & (1 << i):
            count += 1
    if count:
        p = put_len(p, 0x12, 9 * count)                       # 2 greeks
        for i in range(11):
            if greeks_mask & (1 << i):
                p = put_double(p, <unsigned char>(((i + 1) << 3) | 1), greeks[i])
    p = put_len(p, 0x1a, 36)                                  # 3 inputs
    p = put_double(p, 0x09, forward)
    p = put_double(p, 0x11, discount_factor)
    p = put_double(p, 0x19, time_to_expiry)
    p = put_double(p, 0x21, volatility)
    p = put_len(p, 0x22, n_ref)                               # 4 priced_by
    memcpy(p, ref, n_ref)
    return p + n_ref


def encode_price_response(double price, int greeks_mask, greeks, double forward, double discount_factor,
                          double time_to_expiry, double volatility, bytes model_ref):
    """PriceResponse bytes. ``greeks`` holds 11 values in Greeks field order (delta, gamma,
    vega, theta, rho, dividend_rho, vanna, volga, charm, vega_per_point, theta_per_day);
    bit (1 << i) of ``greeks_mask`` writes field i + 1 (the others stay absent)."""
    cdef unsigned char buf[512]
    cdef double g[11]
    cdef int i
    cdef Py_ssize_t n_ref = len(model_ref)
    if n_ref > 300:
        raise ValueError("model_ref too long")
    for i in range(11):
        g[i] = greeks[i] if greeks_mask & (1 << i) else 0.0
    cdef unsigned char *p = write_price(buf, price, greeks_mask, g, forward, discount_factor, time_to_expiry,
                                        volatility, PyBytes_AS_STRING(model_ref), n_ref)
    return PyBytes_FromStringAndSize(<char *>buf, p - buf)


def split_stream_request(const unsigned char[::1] data):
    """A PriceStreamRequest's (correlation_id, trade_id, body, start, end), body 0 (none), 2 (price)
    or 3 (market_update) spanning data[start:end]; None to use the generated code."""
    cdef Reader r, s
    cdef unsigned long long key
    cdef int body = 0
    cdef Py_ssize_t start = 0, end = 0
    cdef const unsigned char *base
    cid = b""
    tid = b""
    if data.shape[0] == 0:
        return ("", "", 0, 0, 0)
    base = &data[0]
    r.p = base
    r.end = base + data.shape[0]
    r.ok = True
    while r.ok and r.p < r.end:
        key = read_varint(&r)
        if key == 0x0a or key == 0x22:
            if not sub(&r, &s):
                return None
            if key == 0x0a:
                cid = PyBytes_FromStringAndSize(<const char *>s.p, s.end - s.p)
            else:
                tid = PyBytes_FromStringAndSize(<const char *>s.p, s.end - s.p)
        elif key == 0x12 or key == 0x1a:
            if body != 0 or not sub(&r, &s):
                return None                                   # a repeated body merges: slow path
            body = <int>(key >> 3)
            start = s.p - base
            end = s.end - base
        else:
            return None
    if not r.ok:
        return None
    try:
        return (cid.decode("utf-8"), tid.decode("utf-8"), body, start, end)
    except UnicodeDecodeError:
        return None


from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_WRITE


def reply_buffer(Py_ssize_t n):
    """(bytes, writable memoryview of it): a reply the kernels can write into in place.

    A new bytes object is only ever filled by its creator before anyone else sees it (as
    CPython itself does); the caller must finish writing before handing the bytes on, and
    keep the bytes alive while it uses the view."""
    b = PyBytes_FromStringAndSize(NULL, n)
    return b, PyMemoryView_FromMemory(PyBytes_AS_STRING(b), n, PyBUF_WRITE)


# ------------------------------------------------------------------ the lean per-trade path
def lean_price_args(const unsigned char[::1] data):
    """(model, option_type, strike, time, underlying, rate, dividend_yield, volatility,
    measures_mask) of a PriceRequest that the analytic European engines price as it stands
    (model 1..3, a year-fraction expiry, the model's own underlying, no dividend yield off
    BSM, measures 1..10), or None: then the full path decides (and words any error)."""
    t = decode_price_request(data)
    if t is None:
        return None
    cdef int model = t[0]
    cdef int und_kind = t[9]
    cdef int m, mask = 0
    if model < 1 or model > 3 or not t[1] or t[4] != 1:
        return None
    if (model == 1) != (und_kind == 1) or und_kind == 0:
        return None
    if model != 1 and t[12] != 0.0:
        return None
    for m in t[14]:
        if m < 1 or m > 10:
            return None
        mask |= 1 << m
    return (model, t[2], t[3], t[5], t[10], t[11], t[12], t[13], mask)


cdef unsigned char *write_kernel_price(unsigned char *p, tuple out, int mask, double time_to_expiry,
                                       double volatility, bytes model_ref) except NULL:
    """A PriceResponse's fields 1-4 at ``p`` from the kernel's single-trade tuple (status,
    forward, df, price, delta, gamma, vega, theta, rho, dividend_rho, vanna, volga, charm)
    and the measures mask (bit 1 << Measure); vega_per_point and theta_per_day beside vega
    and theta."""
    cdef double greeks[11]
    cdef int i, gmask = 0
    cdef Py_ssize_t n_ref = len(model_ref)
    if n_ref > 300:
        raise ValueError("model_ref too long")
    for i in range(9):                                        # Measure 2 + i -> Greeks field i + 1
        if mask & (1 << (i + 2)):
            greeks[i] = out[4 + i]
            gmask |= 1 << i
        else:
            greeks[i] = 0.0
    greeks[9] = greeks[2] / 100.0
    greeks[10] = greeks[3] / 365.0
    if gmask & 4:
        gmask |= 1 << 9
    if gmask & 8:
        gmask |= 1 << 10
    return write_price(p, out[3], gmask, greeks, out[1], out[2], time_to_expiry, volatility,
                       PyBytes_AS_STRING(model_ref), n_ref)


cdef inline Py_ssize_t varint_size(Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


def encode_lean_reply(tuple out, int mask, double time_to_expiry, double volatility, bytes model_ref,
                      tuple details, cid=None):
    """The lean path's whole reply in one call: the PriceResponse of the kernel's tuple
    (write_kernel_price) followed by its ``details`` ((entry prefix bytes up to the value, slot of the value in
    ``out``) per measure, as responses._detail_prefix writes them); with ``cid`` (bytes) the
    PriceStreamResponse around it (correlation_id = cid when not empty, result = the
    PriceResponse), as a stream message with no trade id is answered."""
    cdef unsigned char buf[1024]
    cdef unsigned char *p = write_kernel_price(buf, out, mask, time_to_expiry, volatility, model_ref)
    cdef Py_ssize_t n_inner, n_prefix, n_cid = 0, total
    cdef double v
    for prefix, slot in details:
        n_prefix = len(<bytes>prefix)
        if p - buf + n_prefix + 8 > 1024:
            raise ValueError("details too long")
        memcpy(p, PyBytes_AS_STRING(prefix), n_prefix)
        p += n_prefix
        v = out[slot]
        memcpy(p, &v, 8)
        p += 8
    n_inner = p - buf
    if cid is None:
        return PyBytes_FromStringAndSize(<char *>buf, n_inner)
    n_cid = len(<bytes>cid)
    total = 1 + varint_size(n_inner) + n_inner
    if n_cid:
        total += 1 + varint_size(n_cid) + n_cid
    reply = PyBytes_FromStringAndSize(NULL, total)
    p = <unsigned char *>PyBytes_AS_STRING(reply)
    if n_cid:
        p = put_len(p, 0x0a, n_cid)                           # 1 correlation_id
        memcpy(p, PyBytes_AS_STRING(cid), n_cid)
        p += n_cid
    p = put_len(p, 0x1a, n_inner)                             # 3 result
    memcpy(p, buf, n_inner)
    return reply


# =========================================================================== batch reader
# 4. The batch requests' reader (PriceBatchRequest, ImpliedVolatilityBatchRequest): the same
#    pricegrid.v1.wire.View the pure-Python reader builds (zero-copy columns, protobuf merge
#    semantics), read in time linear in the message and with the GIL released while the
#    bytes are walked. The Python reader is quadratic on crafted input (a singular message
#    or a column sent as thousands of pieces: np.concatenate per piece; 1.3 MiB held the GIL
#    for 2-3 s) and slow on legitimate packed int32 columns (a Python loop per value). Here:
#    - pass 1 (C, nogil) walks a message's bytes once: unknown fields skipped, the last value
#      of each singular scalar kept, each singular message's occurrences kept as segments
#      (their concatenation is the merged message: protobuf's merge rule) and each repeated
#      scalar's elements counted; oneof members clear each other as they come;
#    - columns: one packed run is a view into the message (as before); several runs, or
#      unpacked items, are copied once into an array of the counted size (pass 2, C, nogil);
#      repeated int32 / int64 / bool come back as numpy arrays, repeated enums as lists;
#    - a sub-message is read the same way over its segments, so every byte is walked once
#      per level of nesting, and the Python work per message is one step per field it has.
#    Bounds, refused as DecodeError (INVALID_ARGUMENT): more than MAX_MERGED occurrences of
#    one singular message field, more than MAX_ENUMS values of a repeated enum, nesting
#    deeper than MAX_DEPTH. Messages with field kinds this reader does not handle (repeated
#    messages or strings, floats, fixed-width ints, zigzag ints) are read by wire.parse.
#    tests/server/test_batch_reader.py checks it against wire.parse and the generated code.

from libc.stdlib cimport malloc, free, realloc, calloc
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

import numpy as np
from google.protobuf.descriptor import FieldDescriptor as _T
from pricegrid.v1 import wire as _wire

cdef enum:
    K_MESSAGE = 1
    K_DOUBLE = 2
    K_VARINT = 3
    K_STRING = 4
    K_BYTES = 5
    K_UNSUPPORTED = 6

cdef enum:
    V_INT32 = 0     # int32 and enum: the low 32 bits, signed
    V_INT64 = 1
    V_UINT = 2      # uint32, uint64: as sent
    V_BOOL = 3

cdef enum:
    E_OK = 0
    E_VARINT = 1
    E_FIELD0 = 2
    E_WIRE = 3
    E_LEN = 4
    E_FIXED64 = 5
    E_FIXED32 = 6
    E_WRONG_WIRE = 7
    E_PACKED_DOUBLES = 8
    E_MERGED = 9
    E_UNSUPPORTED = 10
    E_NOMEM = 11

cdef enum:
    _MAX_MERGED = 4096      # occurrences of one singular message field merged at most
    _MAX_ENUMS = 4096       # values of a repeated enum at most (measures: a handful)
    _MAX_DEPTH = 32         # levels of nested messages at most
#: occurrences of one singular message field merged at most (a legitimate writer sends one)
MAX_MERGED = _MAX_MERGED
#: values of a repeated enum at most (measures: a handful)
MAX_ENUMS = _MAX_ENUMS
#: levels of nested messages at most
MAX_DEPTH = _MAX_DEPTH
# walk a message's bytes without the GIL from this size on (below, the release costs more)
cdef Py_ssize_t _NOGIL_BYTES = 16384


cdef struct Seg:
    Py_ssize_t pos
    Py_ssize_t end


cdef struct FieldC:
    int kind
    int vkind
    int repeated
    int oneof       # index of its oneof, or -1
    int is_enum


cdef struct Acc:
    int seen
    int wire                    # singular: the last occurrence's wire type
    Py_ssize_t pos              # singular: payload position (LEN, fixed64)
    Py_ssize_t n                # singular: payload length (LEN)
    unsigned long long value    # singular varint
    Py_ssize_t count            # repeated scalar: elements; message: segments kept
    Py_ssize_t nocc             # repeated scalar: occurrences (packed runs, single items)
    Py_ssize_t first_pos        # repeated scalar: its first occurrence
    Py_ssize_t first_n
    int first_wire
    Seg *segs                   # message: segments to read as one message
    Py_ssize_t cap


cdef inline int _varint(const unsigned char *b, Py_ssize_t *pos, Py_ssize_t end,
                        unsigned long long *out) noexcept nogil:
    cdef unsigned long long result = 0
    cdef int shift = 0
    cdef unsigned char c
    cdef Py_ssize_t p = pos[0]
    while True:
        if p >= end or shift > 63:
            return E_VARINT
        c = b[p]
        p += 1
        result |= (<unsigned long long>(c & 0x7F)) << shift
        if c < 0x80:
            pos[0] = p
            out[0] = result
            return E_OK
        shift += 7


cdef int _scan(const unsigned char *b, const Seg *segs, Py_ssize_t nsegs, const FieldC *fields,
               int nfields, const int *slot_of, int maxnum, Acc *acc, int *bad) noexcept nogil:
    """Pass 1 over one message's segments (see the note above). ``bad``: the slot an error
    is about (-1: none)."""
    cdef Py_ssize_t s, pos, end, n, q, k
    cdef unsigned long long key, value, number
    cdef int wire, slot, j, err
    cdef const FieldC *f
    cdef Acc *a
    cdef Seg *grown
    bad[0] = -1
    for s in range(nsegs):
        pos = segs[s].pos
        end = segs[s].end
        while pos < end:
            err = _varint(b, &pos, end, &key)
            if err:
                return err
            number = key >> 3
            wire = <int>(key & 7)
            if number == 0:
                return E_FIELD0
            value = 0
            n = 0
            if wire == 0:
                err = _varint(b, &pos, end, &value)
                if err:
                    return err
                q = pos
            elif wire == 1:
                if end - pos < 8:
                    return E_FIXED64
                q = pos
                pos += 8
            elif wire == 2:
                err = _varint(b, &pos, end, &value)
                if err:
                    return err
                if value > <unsigned long long>(end - pos):
                    return E_LEN
                n = <Py_ssize_t>value
                q = pos
                pos += n
            elif wire == 5:
                if end - pos < 4:
                    return E_FIXED32
                q = pos
                pos += 4
            else:
                return E_WIRE
            if number > <unsigned long long>maxnum or slot_of[number] < 0:
                continue                                   # unknown field: skipped
            slot = slot_of[number]
            f = &fields[slot]
            a = &acc[slot]
            bad[0] = slot
            if f.oneof >= 0:                               # a oneof member clears the others
                for j in range(nfields):
                    if j != slot and fields[j].oneof == f.oneof and acc[j].seen:
                        acc[j].seen = 0
                        acc[j].count = 0
            if f.kind == K_MESSAGE:
                if wire != 2:
                    return E_WRONG_WIRE
                if a.count >= _MAX_MERGED:
                    return E_MERGED
                if a.count == a.cap:
                    grown = <Seg *>realloc(a.segs, (a.cap * 2 + 4) * sizeof(Seg))
                    if grown == NULL:
                        return E_NOMEM
                    a.segs = grown
                    a.cap = a.cap * 2 + 4
                a.segs[a.count].pos = q
                a.segs[a.count].end = q + n
                a.count += 1
            elif f.kind == K_UNSUPPORTED:
                return E_UNSUPPORTED
            elif f.repeated:
                if f.kind == K_DOUBLE:
                    if wire == 2:
                        if n % 8:
                            return E_PACKED_DOUBLES
                        a.count += n // 8
                    elif wire == 1:
                        a.count += 1
                    else:
                        return E_WRONG_WIRE
                elif f.kind == K_VARINT:
                    if wire == 0:
                        a.count += 1
                    elif wire == 2:
                        if n and b[q + n - 1] >= 0x80:
                            return E_VARINT
                        for k in range(n):
                            if b[q + k] < 0x80:
                                a.count += 1
                    else:
                        return E_WRONG_WIRE
                else:
                    return E_UNSUPPORTED
                if a.nocc == 0:
                    a.first_pos = q
                    a.first_n = n
                    a.first_wire = wire
                a.nocc += 1
            else:
                if f.kind == K_DOUBLE:
                    if wire != 1:
                        return E_WRONG_WIRE
                elif f.kind == K_VARINT:
                    if wire != 0:
                        return E_WRONG_WIRE
                elif wire != 2:                            # string, bytes
                    return E_WRONG_WIRE
                a.wire = wire
                a.pos = q
                a.n = n
                a.value = value
            a.seen = 1
            bad[0] = -1
    return E_OK


cdef int _fill(const unsigned char *b, const Seg *segs, Py_ssize_t nsegs, const FieldC *fields,
               const int *slot_of, int maxnum, void **out, Py_ssize_t *filled) noexcept nogil:
    """Pass 2: the repeated scalars whose ``out[slot]`` is set, copied (doubles) or decoded
    (varints, as the field's kind) in message order."""
    cdef Py_ssize_t s, pos, end, n, q, stop, i
    cdef unsigned long long key, value, number
    cdef int wire, slot, err
    cdef const FieldC *f
    for s in range(nsegs):
        pos = segs[s].pos
        end = segs[s].end
        while pos < end:
            _varint(b, &pos, end, &key)                    # pass 1 checked the framing
            number = key >> 3
            wire = <int>(key & 7)
            n = 0
            if wire == 0:
                q = pos
                _varint(b, &pos, end, &value)
            elif wire == 1:
                q = pos
                pos += 8
            elif wire == 2:
                _varint(b, &pos, end, &value)
                n = <Py_ssize_t>value
                q = pos
                pos += n
            else:
                q = pos
                pos += 4
            if number > <unsigned long long>maxnum or slot_of[number] < 0 or out[slot_of[number]] == NULL:
                continue
            slot = slot_of[number]
            f = &fields[slot]
            if f.kind == K_DOUBLE:
                i = filled[slot]
                if wire == 2:
                    memcpy((<char *>out[slot]) + i * 8, b + q, n)
                    filled[slot] = i + n // 8
                else:
                    memcpy((<char *>out[slot]) + i * 8, b + q, 8)
                    filled[slot] = i + 1
                continue
            stop = q + (n if wire == 2 else 0)
            while True:
                if wire == 2:
                    if q >= stop:
                        break
                    err = _varint(b, &q, stop, &value)
                    if err:
                        return err
                else:
                    err = _varint(b, &q, end, &value)
                    if err:
                        return err
                i = filled[slot]
                if f.vkind == V_INT32:
                    (<int32_t *>out[slot])[i] = <int32_t>(<uint32_t>(value & 0xFFFFFFFFULL))
                elif f.vkind == V_INT64:
                    (<int64_t *>out[slot])[i] = <int64_t>value
                elif f.vkind == V_UINT:
                    (<uint64_t *>out[slot])[i] = <uint64_t>value
                else:
                    (<unsigned char *>out[slot])[i] = value != 0
                filled[slot] = i + 1
                if wire != 2:
                    break
    return E_OK


cdef class _Schema:
    """One message type as the reader needs it: a slot per field, by field number."""
    cdef FieldC *fields
    cdef int *slot_of
    cdef int nfields, maxnum
    cdef object desc, names, subs

    def __dealloc__(self):
        free(self.fields)
        free(self.slot_of)


_SCHEMAS = {}


cdef _Schema _schema(desc, dict building=None):
    """The reader's schema of ``desc`` (cached); None when a field kind is not handled. A
    schema is published in the cache only once complete (another thread may be reading);
    ``building`` holds those of this call still being filled (a recursive type)."""
    cached = _SCHEMAS.get(desc.full_name, False)
    if cached is not False:
        return cached
    if building is None:
        building = {}
        top = _schema(desc, building)
        _SCHEMAS.update(building)
        return top
    if desc.full_name in building:
        return building[desc.full_name]
    T = _T
    varint = {T.TYPE_INT32: V_INT32, T.TYPE_ENUM: V_INT32, T.TYPE_INT64: V_INT64, T.TYPE_UINT32: V_UINT,
              T.TYPE_UINT64: V_UINT, T.TYPE_BOOL: V_BOOL}
    fields = list(desc.fields)
    cdef _Schema sc = _Schema()
    building[desc.full_name] = sc            # before the sub-messages: a recursive type ends here
    sc.desc = desc
    sc.names = [f.name for f in fields]
    sc.subs = [None] * len(fields)
    sc.nfields = len(fields)
    sc.maxnum = max((f.number for f in fields), default=0)
    if sc.maxnum > 4096:
        building[desc.full_name] = None
        return None
    sc.fields = <FieldC *>calloc(max(1, sc.nfields), sizeof(FieldC))
    sc.slot_of = <int *>malloc((sc.maxnum + 1) * sizeof(int))
    if sc.fields == NULL or sc.slot_of == NULL:
        raise MemoryError()
    cdef int i
    for i in range(sc.maxnum + 1):
        sc.slot_of[i] = -1
    oneofs = {o.full_name: k for k, o in enumerate(desc.oneofs)}
    handled = True
    for i, f in enumerate(fields):
        sc.slot_of[f.number] = i
        sc.fields[i].repeated = f.is_repeated
        sc.fields[i].oneof = oneofs[f.containing_oneof.full_name] if f.containing_oneof is not None else -1
        sc.fields[i].is_enum = f.type == T.TYPE_ENUM
        if f.type == T.TYPE_MESSAGE:
            sc.fields[i].kind = K_MESSAGE
            if f.is_repeated:
                handled = False
        elif f.type == T.TYPE_DOUBLE:
            sc.fields[i].kind = K_DOUBLE
        elif f.type in varint:
            sc.fields[i].kind = K_VARINT
            sc.fields[i].vkind = varint[f.type]
        elif f.type == T.TYPE_STRING or f.type == T.TYPE_BYTES:
            sc.fields[i].kind = K_STRING if f.type == T.TYPE_STRING else K_BYTES
            if f.is_repeated:
                handled = False
        else:
            sc.fields[i].kind = K_UNSUPPORTED   # refused when present, as wire.View does
    for i, f in enumerate(fields):
        if f.type == T.TYPE_MESSAGE:
            sub = _schema(f.message_type, building)
            if sub is None:
                handled = False
            sc.subs[i] = sub
    if not handled:
        building[desc.full_name] = None
        return None
    return sc


def _error(int err, _Schema sc, int slot):
    name = sc.names[slot] if slot >= 0 else ""
    f = sc.desc.fields[slot] if slot >= 0 else None
    text = {
        E_VARINT: "truncated or overlong varint",
        E_FIELD0: "field number 0",
        E_WIRE: "unsupported wire type",
        E_LEN: "truncated length-delimited field",
        E_FIXED64: "truncated fixed64",
        E_FIXED32: "truncated fixed32",
        E_WRONG_WIRE: f"{name}: wrong wire type",
        E_PACKED_DOUBLES: f"{name}: packed doubles of a length not a multiple of 8",
        E_MERGED: f"{name}: more than {MAX_MERGED} occurrences of a singular message field",
        E_UNSUPPORTED: f"{name}: field type {f.type if f is not None else ''} is not supported by pricegrid.v1.wire",
        E_NOMEM: "out of memory",
    }[err]
    return _wire.DecodeError(text)


cdef object _read(_Schema sc, object data, const unsigned char *b, Seg *segs, Py_ssize_t nsegs, int depth):
    """A wire.View of the message made of ``segs`` of ``data`` (see the note above)."""
    if depth > MAX_DEPTH:
        raise _wire.DecodeError(f"messages nested deeper than {MAX_DEPTH} levels")
    cdef int nf = sc.nfields, slot = -1, err = 0, i
    cdef Py_ssize_t total = 0, s
    for s in range(nsegs):
        total += segs[s].end - segs[s].pos
    cdef Acc *acc = <Acc *>calloc(max(1, nf), sizeof(Acc))
    cdef void **out = <void **>calloc(max(1, nf), sizeof(void *))
    cdef Py_ssize_t *filled = <Py_ssize_t *>calloc(max(1, nf), sizeof(Py_ssize_t))
    cdef double d
    cdef const FieldC *f
    cdef bint need_fill = False
    cdef object arrays = [None] * nf
    try:
        if acc == NULL or out == NULL or filled == NULL:
            raise MemoryError()
        if total >= _NOGIL_BYTES:
            with nogil:
                err = _scan(b, segs, nsegs, sc.fields, nf, sc.slot_of, sc.maxnum, acc, &slot)
        else:
            err = _scan(b, segs, nsegs, sc.fields, nf, sc.slot_of, sc.maxnum, acc, &slot)
        if err:
            raise _error(err, sc, slot)
        values = {}
        present = set()
        # repeated scalars: a view of a single packed run, else arrays filled in pass 2
        for i in range(nf):
            f = &sc.fields[i]
            if not acc[i].seen or not f.repeated:
                continue
            if f.kind == K_DOUBLE:
                if acc[i].count == 0:
                    arrays[i] = np.empty(0, dtype="<f8")
                    continue
                if acc[i].nocc == 1 and acc[i].first_wire == 2:
                    arrays[i] = np.frombuffer(data, dtype="<f8", count=acc[i].count, offset=acc[i].first_pos)
                    continue
                arrays[i] = np.empty(acc[i].count, dtype="<f8")
            else:
                if f.is_enum and acc[i].count > MAX_ENUMS:
                    raise _wire.DecodeError(f"{sc.names[i]}: more than {MAX_ENUMS} values")
                arrays[i] = np.empty(acc[i].count, dtype=(np.int32, np.int64, np.uint64, np.bool_)[f.vkind])
            if acc[i].count:
                out[i] = <void *><Py_ssize_t>arrays[i].ctypes.data
                need_fill = True
        if need_fill:
            if total >= _NOGIL_BYTES:
                with nogil:
                    err = _fill(b, segs, nsegs, sc.fields, sc.slot_of, sc.maxnum, out, filled)
            else:
                err = _fill(b, segs, nsegs, sc.fields, sc.slot_of, sc.maxnum, out, filled)
            if err:
                raise _error(err, sc, -1)
        for i in range(nf):
            if not acc[i].seen:
                continue
            f = &sc.fields[i]
            name = sc.names[i]
            present.add(name)
            if f.kind == K_MESSAGE:
                values[name] = _read(<_Schema>sc.subs[i], data, b, acc[i].segs, acc[i].count, depth + 1)
            elif f.repeated:
                values[name] = arrays[i].tolist() if f.is_enum else arrays[i]
            elif f.kind == K_DOUBLE:
                memcpy(&d, b + acc[i].pos, 8)
                values[name] = d
            elif f.kind == K_VARINT:
                if f.vkind == V_INT32:
                    values[name] = <int32_t>(<uint32_t>(acc[i].value & 0xFFFFFFFFULL))
                elif f.vkind == V_INT64:
                    values[name] = <int64_t>acc[i].value
                elif f.vkind == V_UINT:
                    values[name] = acc[i].value
                else:
                    values[name] = acc[i].value != 0
            elif f.kind == K_STRING:
                try:
                    values[name] = (<const char *>b)[acc[i].pos:acc[i].pos + acc[i].n].decode("utf-8")
                except UnicodeDecodeError:
                    raise _wire.DecodeError(f"{name}: invalid UTF-8") from None
            else:
                values[name] = memoryview(data)[acc[i].pos:acc[i].pos + acc[i].n]
        return _wire.View.of(sc.desc, values, present)
    finally:
        if acc != NULL:
            for i in range(nf):
                free(acc[i].segs)
        free(acc)
        free(out)
        free(filled)


def read_view(message_cls, data):
    """``data`` (bytes) as a pricegrid.v1.wire.View of ``message_cls``, read in linear time
    with the GIL released over large messages; wire.parse for a message type this reader does
    not handle. Raises pricegrid.v1.wire.DecodeError for malformed or refused input."""
    sc = _schema(message_cls.DESCRIPTOR)
    if sc is None:
        return _wire.parse(message_cls, data)
    cdef const unsigned char[::1] mv = data
    cdef Seg whole
    whole.pos = 0
    whole.end = mv.shape[0]
    cdef const unsigned char *b = &mv[0] if mv.shape[0] else <const unsigned char *>b""
    return _read(<_Schema>sc, data, b, &whole, 1, 0)
