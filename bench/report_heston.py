"""Per-option medians and ratios from a pytest-benchmark JSON file of bench/test_bench_heston.py.

    .venv/bin/python bench/report_heston.py /tmp/bench_heston.json

For each book it prints the median time per call and per option of every implementation,
the largest difference of each QuantLib engine from ours, then ours (1 thread) vs each
QuantLib engine and ours with 2 threads vs 1 thread, as "how many times faster" (ratios of
medians, all from the one run in the file).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def load(path: str) -> dict:
    """{layout: {(impl, threads): (median seconds per call, rows per call, extra_info)}}"""
    with open(path) as f:
        data = json.load(f)
    table: dict = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "impl" not in info:
            continue
        table[info["layout"]][(info["impl"], info["threads"])] = (bench["stats"]["median"], info["rows"], info)
    return table


def report(table: dict) -> str:
    lines = []
    for layout in sorted(table):
        cases = table[layout]
        lines.append(f"book = {layout}")
        per_row = {}
        for (impl, threads), (median, rows, info) in sorted(cases.items()):
            per_row[(impl, threads)] = median / rows
            diff = f"  max |diff| vs ours {info['max_diff']:.1e}" if "max_diff" in info else ""
            lines.append(f"  {impl:>17} {threads} thread{'s' if threads > 1 else ' '}  median {median * 1e3:10.3f} ms"
                         f"  per option {median / rows * 1e6:9.3f} us  ({rows:,} options){diff}")
        ours1, ours2 = per_row.get(("pricegrid", 1)), per_row.get(("pricegrid", 2))
        for (impl, threads), value in sorted(per_row.items()):
            if impl.startswith("quantlib") and ours1:
                lines.append(f"  ours (1 thread) vs {impl}: {value / ours1:8.1f}x")
        if ours1 and ours2:
            lines.append(f"  ours 2 threads vs 1 thread:  {ours1 / ours2:8.2f}x")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(report(load(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
