# cython: language_level=3
"""Market columns: a batch's rows on one underlying of a market snapshot turned into the
level, rate, dividend-yield and vol columns the pricing kernels read.

Design
------
1. Per row i with expiry T_i (years) and strike K_i:
   - rate_i  = the discount curve's continuously compounded zero rate at T_i (DF = exp(-r T));
   - q_i     = the dividend curve's zero rate at T_i (0 without a dividend curve);
   - level_i = the spot less the present value, on the discount curve, of the cash
     dividends with ex-time in (0, T_i] (the escrowed-dividend model), or the futures price;
   - F_i     = level_i exp((rate_i - q_i) T_i) for a spot, the futures price otherwise;
   - vol_i   = the surface's Black vol at (T_i, K_i, F_i) (K_i not > 0: at F_i).
   The curve and surface numbers are those of ``pricegrid.ext.curves`` and
   ``pricegrid.ext.surfaces`` (their pointwise functions, not copies), so a rate or a vol
   here is bit for bit what EvaluateCurve and EvaluateSurface give at the same point;
   except an SVI vol, interpolated in T with weights per expiry (pg_market.h note 2):
   within 4 units in the last place.
2. Speed: everything but the vol depends on T alone, and batches repeat expiries (listed
   dates), so blocks of ``pg_market.h`` look T up in a cache of at most 4096 entries
   keyed by T's bits (one per thread, cleared per call, sized to the call; vector loops
   probe it, pg_market.h note 1): the curves, the escrowed level,
   the forward and the surface's expiry bracket are computed once per distinct T. A cached
   value is what the same T computes, so no number depends on the cache, the row's place or
   the thread split.
3. European options priced on the market in one pass (``Market.price_black``): per block of
   rows the market columns go to block arrays and straight into the Black block loop of
   ``pricegrid.ext.black`` (pg_market.h note 3): the same bits as ``columns`` followed by
   ``black.price_batch`` over blocks aligned the same way, without writing four
   batch-length columns and reading them back. BSM on a spot and Black-76 on a futures
   price over an SVI surface take DF, F and sqrt(T) per expiry and ln(F/K) from the vol
   lookup (pg_market.h note 4): the same market columns, prices and Greeks within 1e-13
   relative (or 1e-15 of the column's largest value) of the two passes.
4. Failures: a time that is not finite and >= 0 gets rate and q 0 (the pricing kernel names
   the row's time); a vol the surface cannot give is NaN (the pricing kernel flags the
   row's vol). Wrong shapes or codes raise ValueError: they are the caller's bug. The
   curves and the surface are the snapshot's, checked when it was stored.
"""

from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free

from black cimport PG_MEASURE_MAX
from pg_common cimport input_bit, out_stride

cdef extern from "pg_curves.h" nogil:
    enum:
        PG_CURVE_WORK_COLUMNS
    ctypedef struct pg_curve:
        int bad
    int pg_curve_prepare(pg_curve *c, int interp, int n, const double *t, const double *v,
                         int kind, double *work, int *node_status)

cdef extern from "pg_surfaces.h" nogil:
    enum:
        PG_SURF_GRID
        PG_SURF_SVI
        PG_SURF_SABR
        PG_AXIS_DELTA
        PG_SVI_COLUMNS
        PG_SABR_COLUMNS
    ctypedef struct pg_surface:
        int bad
    int pg_surface_prepare(pg_surface *S, int kind, int axis, int n, const double *T, int p,
                           const double *x, int q, const double *v, double *work,
                           int *expiry_status, int *node_status, int *value_status)

cdef extern from "pg_market.h" nogil:
    enum:
        PG_MKT_BLOCK
    ctypedef struct pg_market:
        const pg_curve *disc
        const pg_curve *div
        double level
        int spot
        int nd
        const double *div_t
        const double *div_pv
        const pg_surface *surf
    ctypedef struct pg_mkt_entry:
        pass
    ctypedef struct pg_mkt_cache:
        pass
    int pg_mkt_cache_bits(Py_ssize_t m)
    int pg_mkt_cache_size(int bits)
    void pg_mkt_cache_init(pg_mkt_cache *c, int bits, pg_mkt_entry *storage)
    int pg_market_block(const pg_market *M, pg_mkt_cache *cache, const double *T,
                        const double *K, int m, double *level, double *rate, double *q,
                        double *vol)
    Py_ssize_t pg_market_black_block(const pg_market *M, pg_mkt_cache *cache, int model,
                                     const int *type, int type_bcast, const double *K,
                                     const double *T, Py_ssize_t start, int m,
                                     const int *measures, int k, double *out, Py_ssize_t ldo,
                                     double *forward, double *df, int *status,
                                     double *level_out, double *rate_out, double *q_out,
                                     double *vol_out, int *most)
    void pg_mkt_prefault(Py_ssize_t start, Py_ssize_t end, int k, double *out, Py_ssize_t ldo,
                         int *status, double *forward, double *df, double *level,
                         double *rate, double *q, double *vol)

__all__ = ["Market", "PARALLEL_THRESHOLD"]

# Rows below which a call runs on one thread (each thread clears its own cache).
cdef Py_ssize_t _PARALLEL_THRESHOLD = 65536
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD
# Rows per unit of parallel work (a multiple of PG_BLACK_BLOCK and PG_MKT_BLOCK): a thread's
# cache serves this many rows.
cdef Py_ssize_t _CHUNK = 65536
DEF MAX_THREADS = 64

cdef double *_curve(pg_curve *c, int interpolation, const double[::1] t, const double[::1] v,
                    int value_kind, str name) except NULL:
    cdef Py_ssize_t n = t.shape[0]
    if v.shape[0] != n:
        raise ValueError(f"{name}: {v.shape[0]} values for {n} node times")
    if n < 1:
        raise ValueError(f"{name}: no nodes")
    cdef double *work = <double *>malloc(PG_CURVE_WORK_COLUMNS * (n + 1) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    pg_curve_prepare(c, interpolation, <int>n, &t[0], &v[0], value_kind, work, NULL)
    if c.bad:
        free(work)
        raise ValueError(f"{name}: the curve fails its node checks")
    return work


cdef double *_optional(double[::1] col, Py_ssize_t m, str name) except? NULL:
    if col is None or col.shape[0] == 0:
        return NULL
    if col.shape[0] != m:
        raise ValueError(f"{name} has length {col.shape[0]}; expected {m} (rows) or 0")
    return &col[0]


cdef class Market:
    """One underlying of a snapshot, prepared once (curves and surface checked, their
    coefficients computed): ``columns`` fills a batch's market columns, ``price_black``
    prices a European batch on it in one pass."""

    cdef pg_curve disc, div
    cdef pg_surface surf
    cdef pg_market M
    cdef double *disc_work
    cdef double *div_work
    cdef double *surf_work
    cdef readonly bint has_surface
    # the arrays the prepared structs point into
    cdef object _keep

    def __cinit__(self):
        self.disc_work = NULL
        self.div_work = NULL
        self.surf_work = NULL

    def __dealloc__(self):
        free(self.disc_work)
        free(self.div_work)
        free(self.surf_work)

    def __init__(self, int disc_interpolation,
                 const double[::1] disc_times not None,     # discount curve nodes
                 const double[::1] disc_values not None,
                 int disc_kind,
                 int div_interpolation,                     # 0: no dividend curve
                 const double[::1] div_times not None,
                 const double[::1] div_values not None,
                 int div_kind,
                 double level,                              # spot or futures price
                 bint spot,                                 # level is a spot
                 const double[::1] cash_times not None,     # nd ex-times > 0, increasing
                 const double[::1] cash_pv not None,        # nd + 1 cumulative PVs, [0] = 0
                 int surface_kind,                          # 0: no surface
                 int axis,
                 const double[::1] expiries not None,
                 const double[::1] nodes not None,
                 const double[:, ::1] values not None):
        cdef Py_ssize_t nd = cash_times.shape[0], n, p, q
        if cash_pv.shape[0] != nd + 1:
            raise ValueError(f"cash_pv has length {cash_pv.shape[0]}; expected {nd + 1}")
        self._keep = (disc_times, disc_values, div_times, div_values, cash_times, cash_pv,
                      expiries, nodes, values)
        self.disc_work = _curve(&self.disc, disc_interpolation, disc_times, disc_values, disc_kind,
                                "discount curve")
        self.M.disc = &self.disc
        self.M.div = NULL
        if div_interpolation != 0:
            self.div_work = _curve(&self.div, div_interpolation, div_times, div_values, div_kind,
                                   "dividend curve")
            self.M.div = &self.div
        self.M.level = level
        self.M.spot = spot
        self.M.nd = <int>nd
        self.M.div_t = &cash_times[0] if nd > 0 else NULL
        self.M.div_pv = &cash_pv[0]
        self.M.surf = NULL
        self.has_surface = surface_kind != 0
        if surface_kind != 0:
            n, p = expiries.shape[0], nodes.shape[0]
            if surface_kind == PG_SURF_GRID:
                q = p
            elif surface_kind == PG_SURF_SVI:
                q = PG_SVI_COLUMNS
            elif surface_kind == PG_SURF_SABR:
                q = PG_SABR_COLUMNS
            else:
                raise ValueError(f"unknown surface kind {surface_kind}")
            if n < 1 or values.shape[0] != n or values.shape[1] != q:
                raise ValueError(f"surface values have shape ({values.shape[0]}, {values.shape[1]});"
                                 f" expected ({n}, {q}) with n >= 1")
            # a DELTA grid keeps its per-slice log-moneyness nodes in a second n x p half
            self.surf_work = <double *>malloc((n * p * (2 if surface_kind == PG_SURF_GRID and axis == PG_AXIS_DELTA
                                                        else 1) + 1) * sizeof(double))
            if self.surf_work == NULL:
                raise MemoryError()
            pg_surface_prepare(&self.surf, surface_kind, axis, <int>n, &expiries[0], <int>p,
                               &nodes[0] if p > 0 else NULL, <int>q, &values[0, 0],
                               self.surf_work, NULL, NULL, NULL)
            self.M.surf = &self.surf

    def columns(self, const double[::1] times not None,     # IN  m row expiries, years
                const double[::1] strikes not None,         # IN  m row strikes, or empty (at the forward)
                double[::1] level_out not None,             # OUT m
                double[::1] rate_out not None,              # OUT m
                double[::1] q_out not None,                 # OUT m
                double[::1] vol_out not None,               # OUT m with a surface, else empty
                int threads):
        """Fill the market columns of m rows (module note 1). Returns the most cash
        dividends any row's level takes off."""
        cdef Py_ssize_t m = times.shape[0]
        if strikes.shape[0] != m and strikes.shape[0] != 0:
            raise ValueError(f"strikes has length {strikes.shape[0]}; expected {m} (times) or 0")
        for name, col in (("level_out", level_out), ("rate_out", rate_out), ("q_out", q_out)):
            if col.shape[0] != m:
                raise ValueError(f"{name} has length {col.shape[0]}; expected {m} (times)")
        if vol_out.shape[0] != (m if self.has_surface else 0):
            raise ValueError(f"vol_out has length {vol_out.shape[0]}; expected"
                             f" {m if self.has_surface else 0}")
        if m == 0:
            return 0
        cdef const double *T_p = &times[0]
        cdef const double *K_p = &strikes[0] if strikes.shape[0] else NULL
        cdef double *L_p = &level_out[0]
        cdef double *R_p = &rate_out[0]
        cdef double *Q_p = &q_out[0]
        cdef double *V_p = &vol_out[0] if self.has_surface else NULL
        return self._loop(m, threads, T_p, K_p, L_p, R_p, Q_p, V_p, 0, NULL, 0, NULL, 0, NULL, 0,
                          NULL, NULL, NULL, NULL)

    def price_black(self, int model,
                    const int[::1] option_type not None,    # IN  n or 1
                    const double[::1] strike not None,      # IN  n
                    const double[::1] time not None,        # IN  n years
                    const int[::1] measures not None,       # IN  k Measure codes
                    double[:, :] out not None,              # OUT (k, n); rows contiguous
                    double[::1] forward_out,                # OUT n, or empty/None to skip
                    double[::1] df_out,                     # OUT n, or empty/None
                    int[::1] status not None,               # OUT n pg_status.h bits
                    double[::1] level_out,                  # OUT n, or empty/None: the market columns
                    double[::1] rate_out,
                    double[::1] q_out,
                    double[::1] vol_out,
                    int threads):
        """European options (model 1 BSM, 2 Black-76, 3 Bachelier) priced on this market,
        the vol of each row from the surface (required), as ``black.price_batch`` prices
        them on the columns ``columns`` gives. Returns (failed rows, most cash dividends)."""
        cdef Py_ssize_t n = status.shape[0], k = measures.shape[0], j
        if model < 1 or model > 3:
            raise ValueError(f"unknown model {model}; expected 1 (BSM), 2 (Black-76) or 3 (Bachelier)")
        if not self.has_surface:
            raise ValueError("price_black needs a surface for the vols")
        cdef int tb = input_bit("option_type", option_type.shape[0], n, 1)
        if strike.shape[0] != n or time.shape[0] != n:
            raise ValueError(f"strike and time must have length {n} (rows)")
        for j in range(k):
            if measures[j] < 1 or measures[j] > PG_MEASURE_MAX:
                raise ValueError(f"measures[{j}] = {measures[j]} is not a Measure code (1..10)")
        cdef Py_ssize_t ldo = out_stride(out, k, n)
        cdef double *fwd_p = _optional(forward_out, n, "forward_out")
        cdef double *df_p = _optional(df_out, n, "df_out")
        cdef double *L_p = _optional(level_out, n, "level_out")
        cdef double *R_p = _optional(rate_out, n, "rate_out")
        cdef double *Q_p = _optional(q_out, n, "q_out")
        cdef double *V_p = _optional(vol_out, n, "vol_out")
        if n == 0:
            return 0, 0
        cdef Py_ssize_t nbad = 0
        most = self._loop(n, threads, &time[0], &strike[0], L_p, R_p, Q_p, V_p, model,
                          &option_type[0], tb, &measures[0] if k > 0 else NULL, <int>k,
                          &out[0, 0] if k > 0 else NULL, ldo, fwd_p, df_p, &status[0], &nbad)
        return nbad, most

    cdef int _loop(self, Py_ssize_t m, int threads, const double *T_p, const double *K_p,
                   double *L_p, double *R_p, double *Q_p, double *V_p, int model,
                   const int *type_p, int type_bcast, const int *meas_p, int k, double *out_p,
                   Py_ssize_t ldo, double *fwd_p, double *df_p, int *status_p,
                   Py_ssize_t *nbad_out) except -1:
        """Rows [0, m) in chunks of _CHUNK (one cache per thread): market columns only
        (model 0) or European prices on them. Returns the most cash dividends taken."""
        cdef pg_mkt_cache caches[MAX_THREADS]
        cdef pg_mkt_entry *entries = NULL
        cdef int *mosts = NULL
        cdef Py_ssize_t nchunks = (m + _CHUNK - 1) // _CHUNK, c, s, end, nbad = 0
        cdef int nthreads = threads if threads > 1 and m >= _PARALLEL_THRESHOLD else 1
        cdef int bits, tid, mb, got, most = 0
        cdef int blk = PG_MKT_BLOCK
        if nthreads > MAX_THREADS:
            nthreads = MAX_THREADS
        bits = pg_mkt_cache_bits(m if m < _CHUNK else _CHUNK)
        entries = <pg_mkt_entry *>malloc(nthreads * pg_mkt_cache_size(bits) * sizeof(pg_mkt_entry))
        mosts = <int *>malloc(nchunks * sizeof(int))
        try:
            if entries == NULL or mosts == NULL:
                raise MemoryError()
            with nogil:
                for tid in range(nthreads):
                    pg_mkt_cache_init(&caches[tid], bits, entries + tid * pg_mkt_cache_size(bits))
                if model != 0 and nthreads == 1:  # the output pages faulted in first (pg_mkt_prefault)
                    pg_mkt_prefault(0, m, k, out_p, ldo, status_p, fwd_p, df_p, L_p, R_p, Q_p, V_p)
                for c in prange(nchunks, num_threads=nthreads, schedule="static"):
                    tid = threadid()
                    end = (c + 1) * _CHUNK if (c + 1) * _CHUNK < m else m
                    s = c * _CHUNK
                    mosts[c] = 0
                    if model != 0 and nthreads > 1:
                        pg_mkt_prefault(s, end, k, out_p, ldo, status_p, fwd_p, df_p, L_p, R_p,
                                        Q_p, V_p)
                    while s < end:
                        mb = <int>(end - s if end - s < blk else blk)
                        if model == 0:
                            got = pg_market_block(&self.M, &caches[tid], T_p + s,
                                                  K_p + s if K_p != NULL else NULL, mb, L_p + s,
                                                  R_p + s, Q_p + s, V_p + s if V_p != NULL else NULL)
                        else:
                            nbad += pg_market_black_block(&self.M, &caches[tid], model, type_p,
                                                          type_bcast, K_p, T_p, s, mb, meas_p, k,
                                                          out_p, ldo, fwd_p, df_p, status_p, L_p,
                                                          R_p, Q_p, V_p, &got)
                        if got > mosts[c]:
                            mosts[c] = got
                        s = s + mb
            for c in range(nchunks):
                most = mosts[c] if mosts[c] > most else most
            if nbad_out != NULL:
                nbad_out[0] = nbad
            return most
        finally:
            free(entries)
            free(mosts)
