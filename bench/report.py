"""Per-size ratios from a pytest-benchmark JSON file of bench/test_bench_black.py.

    .venv/bin/python bench/report.py /tmp/bench_black.json

For each batch size it prints the median time per call and per row of every
implementation, then: ours (1 thread) vs numpy/scipy, ours (1 thread) vs the QuantLib loop
per option, and ours with 2 threads vs 1 thread (each as "how many times faster"); then
the two-threads-vs-one ratio measured as alternating pairs of calls (the one to quote: the
per-size figures time the two settings minutes apart, so the machine's drift lands in them).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def load(path: str) -> dict:
    """{rows: {(impl, threads): (median seconds per call, rows timed per call)}}"""
    with open(path) as f:
        data = json.load(f)
    table: dict = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if info.get("interleaved"):
            table["interleaved"] = info
            continue
        if info.get("plain_c"):
            table["plain_c"] = info
            continue
        if "impl" not in info:
            continue
        table[info["rows"]][(info["impl"], info["threads"])] = (bench["stats"]["median"], info["timed_rows"])
    return table


def ratio(slow: float | None, fast: float | None) -> str:
    return f"{slow / fast:10.1f}x" if slow and fast else f"{'n/a':>11}"


def report(table: dict) -> str:
    lines = []
    interleaved = table.get("interleaved")
    plain = table.get("plain_c")
    for rows in sorted(r for r in table if r not in ("interleaved", "plain_c")):
        cases = table[rows]
        lines.append(f"rows = {rows:,}")
        per_row = {}
        for (impl, threads), (median, timed) in sorted(cases.items()):
            per_row[(impl, threads)] = median / timed
            lines.append(f"  {impl:>10} {threads} thread{'s' if threads > 1 else ' '}  median {median * 1e3:12.4f} ms"
                         f"  per row {median / timed * 1e9:12.1f} ns  ({timed:,} rows timed)")
        ours1 = per_row.get(("pricegrid", 1))
        lines.append(f"  ours (1 thread) vs numpy/scipy:       {ratio(per_row.get(('numpy', 1)), ours1)}")
        lines.append(f"  ours (1 thread) vs QuantLib loop/row: {ratio(per_row.get(('quantlib', 1)), ours1)}")
        lines.append(f"  ours 2 threads vs 1 thread:           {ratio(ours1, per_row.get(('pricegrid', 2)))}")
    if interleaved:
        one, two = interleaved["one_thread_s"], interleaved["two_threads_s"]
        lines.append(f"interleaved, {interleaved['rows']:,} rows, {interleaved['pairs']} pairs of calls:"
                     f" 1 thread {one * 1e3:.2f} ms, 2 threads {two * 1e3:.2f} ms (medians)")
        lines.append(f"  ours 2 threads vs 1 thread:           {one / two:10.2f}x")
    if plain:
        ours, c = plain["pricegrid_s"], plain["plain_c_s"]
        lines.append(f"vs a plain C loop (bench/c/plain_bsm.c, {' '.join(plain['flags'])}), {plain['rows']:,} rows,"
                     f" {plain['pairs']} interleaved pairs: ours {ours * 1e3:.2f} ms, plain C {c * 1e3:.2f} ms (medians)")
        lines.append(f"  ours / plain C loop (target <= 1.0):  {ours / c:10.2f}x")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(report(load(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
