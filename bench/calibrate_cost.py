"""Every engine's measured cost against the service's estimate (pricegrid.server.domain.cost).

    .venv/bin/python bench/calibrate_cost.py [--json out.json] [name-filter ...]

For each engine of the catalogue (the BSM and Heston rows: Black-76 and Bachelier run the same
kernels), price only and with every Greek, on one thread: a small book through the engine's
runner (best of 3 calls, inputs built outside the timed call), the estimate for the same
book, and their ratio. The catalogue's figures (each pricer's ``EngineCost``) were set from
this script on the 2-core development VM; a ratio near 1 (0.5-2 is what a cap needs) says
they still hold here. About a minute.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pricegrid.server.domain import cost
from pricegrid.server.domain.catalogue import Settings
from pricegrid.server.domain.instruments import MarketBatch
from pricegrid.server.domain.models import Engine, Measure, Model
from pricegrid.server.domain.products import CONTINUOUS, PRODUCTS, ProductBatch
from pricegrid.server.pricers import catalogue as pricers


def book(product: str, rows: int, rng) -> ProductBatch:
    p = PRODUCTS[product]
    c = {}
    fixed = {"barrier": 70.0, "lower_barrier": 70.0, "upper_barrier": 140.0, "running_minimum": 95.0,
             "running_maximum": 105.0, "cash": 1.0, "payoff_strike": 100.0}
    for inp in p.inputs:
        if inp.codes:
            c[inp.name] = rng.choice(np.array(inp.codes, dtype=np.int32), rows).astype(np.int32)
        elif inp.name == "strike":
            c[inp.name] = rng.uniform(80.0, 120.0, rows)
        elif inp.name in fixed:
            c[inp.name] = np.full(rows, fixed[inp.name])
        else:
            c[inp.name] = np.zeros(rows, dtype=np.int32 if inp.dtype == "i4" else np.float64)
    if product == "barrier":  # knock-outs and knock-ins below spot
        c["barrier_type"] = rng.choice(np.array([1, 2], dtype=np.int32), rows).astype(np.int32)
    if product == "touch":
        c["direction"] = np.full(rows, 1, dtype=np.int32)
    c["time_to_expiry"] = rng.uniform(0.25, 2.0, rows)
    return ProductBatch(p, c, CONTINUOUS if p.schedule else None)


def market(model: Model, rows: int, rng) -> MarketBatch:
    if model == Model.HESTON:
        return MarketBatch(np.full(rows, 100.0), np.full(1, 0.03), np.full(1, 0.01), None, rng.uniform(0.01, 0.09, rows),
                           np.full(1, 1.5), np.full(1, 0.04), np.full(1, 0.5), np.full(1, -0.7))
    return MarketBatch(np.full(rows, 100.0), np.full(1, 0.03), np.full(1, 0.01), rng.uniform(0.1, 0.4, rows))


def rows_for(spec) -> int:
    if spec.monte_carlo:
        return 4
    if spec.engine == Engine.BINOMIAL_TREE:
        return 16
    if spec.engine == Engine.FIXED_POINT or spec.model == Model.HESTON:
        return 2000
    return 20000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the table here")
    ap.add_argument("only", nargs="*", help="engines whose product/model/engine name contains one of these")
    args = ap.parse_args(argv)
    settings = Settings(paths=8192, tree_steps=801)
    table = []
    for spec in pricers.CATALOGUE:
        name = f"{spec.product}/{spec.model.name}/{spec.engine.name}"
        if spec.model in (Model.BLACK_76, Model.BACHELIER) or (args.only and not any(o in name for o in args.only)):
            continue
        rng = np.random.default_rng(0)
        run = pricers.runner(spec)
        rows = rows_for(spec)
        b, m = book(spec.product, rows, rng), market(spec.model, rows, rng)
        for measures in ((Measure.PRICE,), spec.measures):
            codes = np.array([int(x) for x in measures], dtype=np.int32)
            out = np.empty((len(codes), rows))
            stderr = np.empty_like(out) if spec.monte_carlo else None
            status = np.empty(rows, dtype=np.int32)
            extra = {"effective": (np.empty(rows), np.empty(rows))} if spec.kernel_writes_forward else {}
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                run(b, m, codes, out, stderr, status, 1, settings, **extra)
                best = min(best, time.perf_counter() - t)
            est = cost.estimate(spec, spec.product, b.columns, b.schedule, m, measures, settings, rows)
            row = {"engine": name, "greeks": len(measures) > 1, "rows": rows, "measured_s": best,
                   "estimated_s": est.seconds, "ratio": est.seconds / best, "bad_rows": int(np.count_nonzero(status))}
            table.append(row)
            print(f"{name:45s} greeks={row['greeks']!s:5s} measured {best * 1e3:9.3f} ms  estimated"
                  f" {est.seconds * 1e3:9.3f} ms  estimate/measured {row['ratio']:5.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
