# cython: language_level=3
"""The front-office hot path's wire codec: PriceRequest in, PriceResponse out, in C.

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


def encode_price_response(double price, int greeks_mask, greeks, double forward, double discount_factor,
                          double time_to_expiry, double volatility, bytes model_ref):
    """PriceResponse bytes. ``greeks`` holds 11 values in Greeks field order (delta, gamma,
    vega, theta, rho, dividend_rho, vanna, volga, charm, vega_per_point, theta_per_day);
    bit (1 << i) of ``greeks_mask`` writes field i + 1 (the others stay absent)."""
    cdef unsigned char buf[512]
    cdef unsigned char *p = buf
    cdef int i, count = 0
    cdef Py_ssize_t n_ref = len(model_ref)
    if n_ref > 300:
        raise ValueError("model_ref too long")
    p = put_double(p, 0x09, price)                            # 1 price
    for i in range(11):
        if greeks_mask & (1 << i):
            count += 1
    if count:
        p = put_len(p, 0x12, 9 * count)                       # 2 greeks
        for i in range(11):
            if greeks_mask & (1 << i):
                p = put_double(p, <unsigned char>(((i + 1) << 3) | 1), <double>greeks[i])
    p = put_len(p, 0x1a, 36)                                  # 3 inputs
    p = put_double(p, 0x09, forward)
    p = put_double(p, 0x11, discount_factor)
    p = put_double(p, 0x19, time_to_expiry)
    p = put_double(p, 0x21, volatility)
    p = put_len(p, 0x22, n_ref)                               # 4 priced_by
    memcpy(p, PyBytes_AS_STRING(model_ref), n_ref)
    p += n_ref
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


def encode_kernel_price(tuple out, int mask, double time_to_expiry, double volatility, bytes model_ref):
    """PriceResponse bytes from the kernel's single-trade tuple (status, forward, df, price,
    delta, gamma, vega, theta, rho, dividend_rho, vanna, volga, charm) and the measures
    mask (bit 1 << Measure); vega_per_point and theta_per_day beside vega and theta."""
    cdef double greeks[11]
    cdef int i, gmask = 0
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
    return encode_price_response(out[3], gmask, [greeks[i] for i in range(11)], out[1], out[2], time_to_expiry,
                                 volatility, model_ref)
