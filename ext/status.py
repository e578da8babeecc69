"""Per-row status bits written by the kernels (mirror of ``pg_status.h``), and the layout of
the stop block the long kernels poll (mirror of ``pg_stop.h``).

A row's status is 0 when it was priced, else the OR of the bits naming each input that was
out of the model's domain (or ``CANCELLED``: the kernel was stopped before the row was
done). ``FIELD_OF_BIT`` names the request field each input bit refers to.
"""

OK = 0
BAD_OPTION_TYPE = 1 << 0
BAD_STRIKE = 1 << 1
BAD_TIME = 1 << 2
BAD_UNDERLYING = 1 << 3
BAD_RATE = 1 << 4
BAD_DIVIDEND = 1 << 5
BAD_VOL = 1 << 6
BAD_PRICE = 1 << 7
PRICE_OUT_OF_BOUNDS = 1 << 8
NOT_FINITE = 1 << 9
BAD_BARRIER = 1 << 10
BAD_REBATE = 1 << 11
BAD_HESTON_V0 = 1 << 12
BAD_HESTON_KAPPA = 1 << 13
BAD_HESTON_THETA = 1 << 14
BAD_HESTON_SIGMA = 1 << 15
BAD_HESTON_RHO = 1 << 16
BAD_UPPER_BARRIER = 1 << 17
BAD_FIXINGS = 1 << 18
BAD_RUNNING = 1 << 19
BAD_PAYOFF_STRIKE = 1 << 20
BAD_MONITORING = 1 << 21
BAD_VARIANT = 1 << 22
CANCELLED = 1 << 23
BAD_PAST_FIXINGS = 1 << 24
BAD_ELAPSED = 1 << 25
BAD_RUNNING_MAX = 1 << 26

# the stop block (int64[STOP_WORDS]): the service sets [STOP_FLAG] to stop and [STOP_DEADLINE]
# (time.monotonic_ns(), 0: none); a kernel that stopped writes its reason to [STOP_REASON]
STOP_FLAG = 0
STOP_DEADLINE = 1
STOP_REASON = 2
STOP_WORDS = 3
STOP_CANCELLED = 1
STOP_DEADLINE_EXCEEDED = 2

MODEL_BSM = 1
MODEL_BLACK76 = 2
MODEL_BACHELIER = 3

CALL = 1
PUT = 2

#: status bit -> kernel input name it refers to (the service maps these to request fields)
FIELD_OF_BIT = {
    BAD_OPTION_TYPE: "option_type",
    BAD_STRIKE: "strike",
    BAD_TIME: "time_to_expiry",
    BAD_UNDERLYING: "underlying",
    BAD_RATE: "rate",
    BAD_DIVIDEND: "dividend_yield",
    BAD_VOL: "volatility",
    BAD_PRICE: "price",
    PRICE_OUT_OF_BOUNDS: "price",
    NOT_FINITE: "",
    BAD_BARRIER: "barrier",
    BAD_REBATE: "rebate",
    BAD_HESTON_V0: "v0",
    BAD_HESTON_KAPPA: "kappa",
    BAD_HESTON_THETA: "theta",
    BAD_HESTON_SIGMA: "sigma",
    BAD_HESTON_RHO: "rho",
    BAD_UPPER_BARRIER: "upper_barrier",
    BAD_FIXINGS: "fixing_times",
    BAD_RUNNING: "running",
    BAD_PAYOFF_STRIKE: "payoff_strike",
    BAD_MONITORING: "monitoring_interval",
    BAD_VARIANT: "variant",
    BAD_PAST_FIXINGS: "past_fixings",
    BAD_ELAPSED: "elapsed",
    BAD_RUNNING_MAX: "running_maximum",
}

__all__ = [name for name in dir() if name.isupper()]
