"""Regenerate price.json: golden PriceRequests with expected values from QuantLib.

    python tests/golden/make_golden.py   (needs QuantLib; run after changing the cases)

Expected values come from QuantLib alone: AnalyticEuropeanEngine on flat curves for BSM
(with the request's day count on the curves, so that QuantLib and pricegrid use the same
time), blackFormula for Black-76 and bachelierBlackFormula for Bachelier.
"""

import json
import math
from pathlib import Path

import QuantLib as ql

HERE = Path(__file__).parent
DAY_COUNTS = {
    "DAY_COUNT_ACT_365F": ql.Actual365Fixed(),
    "DAY_COUNT_ACT_360": ql.Actual360(),
    "DAY_COUNT_ACT_ACT_ISDA": ql.ActualActual(ql.ActualActual.ISDA),
    "DAY_COUNT_THIRTY_360": ql.Thirty360(ql.Thirty360.BondBasis),
}


def qd(s):
    y, m, d = map(int, s.split("-"))
    return ql.Date(d, m, y)


def bsm_case(name, opt, strike, spot, r, q, vol, valuation, expiry, dc_name):
    dc = DAY_COUNTS[dc_name]
    ql.Settings.instance().evaluationDate = qd(valuation)
    t0 = qd(valuation)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)),
        ql.YieldTermStructureHandle(ql.FlatForward(t0, q, dc, ql.Continuous)),
        ql.YieldTermStructureHandle(ql.FlatForward(t0, r, dc, ql.Continuous)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(t0, ql.NullCalendar(), vol, dc)),
    )
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Call if opt == "OPTION_TYPE_CALL" else ql.Option.Put, strike),
        ql.EuropeanExercise(qd(expiry)),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    y, m, d = map(int, valuation.split("-"))
    ey, em, ed = map(int, expiry.split("-"))
    return {
        "name": name,
        "request": {
            "model": "MODEL_BLACK_SCHOLES_MERTON",
            "european": {
                "optionType": opt,
                "strike": strike,
                "expiry": {"dates": {"valuationDate": {"year": y, "month": m, "day": d},
                                     "expiryDate": {"year": ey, "month": em, "day": ed}, "dayCount": dc_name}},
            },
            "market": {"spot": spot, "rate": r, "dividendYield": q, "volatility": vol},
            "measures": ["MEASURE_DELTA", "MEASURE_GAMMA", "MEASURE_VEGA", "MEASURE_THETA", "MEASURE_RHO",
                         "MEASURE_DIVIDEND_RHO"],
        },
        "expected": {
            "price": option.NPV(),
            "greeks": {
                "delta": option.delta(), "gamma": option.gamma(), "vega": option.vega(),
                "theta": option.theta(), "rho": option.rho(), "dividendRho": option.dividendRho(),
            },
            "inputs": {"timeToExpiry": dc.yearFraction(qd(valuation), qd(expiry))},
        },
        "source": f"QuantLib {ql.__version__} AnalyticEuropeanEngine, flat curves, {dc.name()}",
    }


def forward_case(name, model, opt, strike, forward, r, vol, t):
    df = math.exp(-r * t)
    ql_type = ql.Option.Call if opt == "OPTION_TYPE_CALL" else ql.Option.Put
    if model == "MODEL_BLACK_76":
        price = ql.blackFormula(ql_type, strike, forward, vol * math.sqrt(t), df)
        src = "blackFormula"
    else:
        price = ql.bachelierBlackFormula(ql_type, strike, forward, vol * math.sqrt(t), df)
        src = "bachelierBlackFormula"
    return {
        "name": name,
        "request": {
            "model": model,
            "european": {"optionType": opt, "strike": strike, "expiry": {"yearFraction": t}},
            "market": {"forward": forward, "rate": r, "volatility": vol},
        },
        "expected": {"price": price, "inputs": {"forward": forward, "discountFactor": df, "timeToExpiry": t}},
        "source": f"QuantLib {ql.__version__} {src}",
    }


CASES = [
    bsm_case("bsm_atm_call_act365", "OPTION_TYPE_CALL", 100.0, 100.0, 0.05, 0.02, 0.2, "2026-11-24", "2027-05-24", "DAY_COUNT_ACT_365F"),
    bsm_case("bsm_otm_put_act360", "OPTION_TYPE_PUT", 80.0, 100.0, 0.03, 0.0, 0.35, "2026-11-24", "2027-11-24", "DAY_COUNT_ACT_360"),
    bsm_case("bsm_itm_call_actact_leap", "OPTION_TYPE_CALL", 90.0, 100.0, -0.005, 0.01, 0.25, "2027-07-01", "2028-07-03", "DAY_COUNT_ACT_ACT_ISDA"),
    bsm_case("bsm_long_put_30_360", "OPTION_TYPE_PUT", 120.0, 100.0, 0.04, 0.03, 0.18, "2026-01-31", "2036-03-31", "DAY_COUNT_THIRTY_360"),
    bsm_case("bsm_one_day_call", "OPTION_TYPE_CALL", 101.0, 100.0, 0.05, 0.0, 0.6, "2026-11-24", "2026-11-25", "DAY_COUNT_ACT_365F"),
    forward_case("black76_eua_futures_call", "MODEL_BLACK_76", "OPTION_TYPE_CALL", 75.0, 68.4, 0.028, 0.45, 1.05),
    forward_case("black76_index_futures_put", "MODEL_BLACK_76", "OPTION_TYPE_PUT", 5000.0, 5120.0, 0.041, 0.16, 0.25),
    forward_case("bachelier_negative_forward_call", "MODEL_BACHELIER", "OPTION_TYPE_CALL", -0.001, -0.0025, 0.01, 0.0075, 2.0),
    forward_case("bachelier_spread_put", "MODEL_BACHELIER", "OPTION_TYPE_PUT", 1.5, 0.8, 0.02, 1.1, 0.75),
]

if __name__ == "__main__":
    (HERE / "price.json").write_text(json.dumps(CASES, indent=2) + "\n")
    print(f"wrote {len(CASES)} cases")
