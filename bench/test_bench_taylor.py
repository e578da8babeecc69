"""Taylor and hybrid revaluation against full revaluation (the same run as
test_bench_scenarios.py: 10,000 European options on the demo snapshot's SPX x 1,000 scenarios
of spot, vol and zero-rate shifts, aggregates only, one thread), in alternating rounds; the
report gives each mode's median time, its ratio to FULL's, and the error of the portfolio's
99% VaR against FULL's.

    .venv/bin/python -m pytest bench/test_bench_taylor.py --benchmark-json=/tmp/taylor.json -p no:logging
    .venv/bin/python -c "import json; print(json.load(open('/tmp/taylor.json'))['benchmarks'][0]['extra_info'])"
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from pricegrid.server.service.scenarios import Book, ScenarioRun
from pricegrid.server.service.taylor import TaylorOptions, TaylorRun

TRADES, SCENARIOS, ROUNDS = 10_000, 1_000, 3
BLOCK_CELLS = 524_288  # RiskService's 4 MB blocks


def test_taylor_and_hybrid_against_full_revaluation(benchmark, spx_scenarios):
    threadpool_limits(limits=1, user_api="blas")  # as the server runs
    book = spx_scenarios(TRADES, SCENARIOS, 1)
    spec, batch, ref, scenarios, quantity, revaluer = (book.spec, book.batch, book.ref, book.scenarios, book.quantity,
                                                       book.revaluer)
    levels = ((0.99,), (0.975,))
    books = [Book(spec, batch, ref, TRADES, {}, quantity, threads=1)]

    def full():
        return _aggregates(revaluer.revalue_portfolio(books, scenarios, block_cells=BLOCK_CELLS, reuse=True))

    def expansion(hybrid: bool, cross: bool):
        def once():
            t = TaylorRun(revaluer, books, scenarios, TaylorOptions(hybrid=hybrid, cross=cross),
                          var_levels=levels[0], es_levels=levels[1], block_cells=BLOCK_CELLS)
            a = _aggregates(t.revaluation)
            t.report(a)
            return a
        return once

    def _aggregates(revaluation):
        run = ScenarioRun(revaluation, TRADES, SCENARIOS, *levels, trade_risk=False)
        while run.next_block() is not None:
            pass
        return run.aggregates()

    modes = {"full": full, "taylor": expansion(False, False), "taylor_cross": expansion(False, True),
             "hybrid": expansion(True, False)}
    times: dict[str, list[float]] = {name: [] for name in modes}
    var: dict[str, float] = {}

    def rounds():
        for fn in modes.values():  # warm
            fn()
        for _ in range(ROUNDS):
            for name, fn in modes.items():
                t0 = time.perf_counter()
                a = fn()
                times[name].append(time.perf_counter() - t0)
                var[name] = float(a.var[0])

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    median = {name: float(np.median(t)) for name, t in times.items()}
    benchmark.extra_info.update(
        trades=TRADES, scenarios=SCENARIOS, rounds=ROUNDS, **{f"{n}_s": s for n, s in median.items()},
        **{f"{n}_ratio": median[n] / median["full"] for n in modes if n != "full"},
        **{f"{n}_var_error": var[n] / var["full"] - 1 for n in modes if n != "full"})
    assert var["hybrid"] == var["full"]  # the default tail covers the 99% VaR here
