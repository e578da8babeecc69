"""Per-option times and ratios of medians from a JSON file of bench/test_bench_asian.py.

    .venv/bin/python bench/report_asian.py bench/results/asian.json

For each product: the median time per call and per option of every implementation, then
ours (price, 1 thread) against the QuantLib loop per option, ours with 2 threads against 1,
and the cost of adding the six Greeks (each "how many times").
"""

from __future__ import annotations

import sys

from _report import load, ratio  # bench/ is the script's own folder


def report(table: dict) -> str:
    lines = []
    for product in sorted(table):
        cases = table[product]
        lines.append(product)
        per = {}
        for key, (median, timed) in sorted(cases.items()):
            per[key] = median / timed
            impl, threads, measures = key
            lines.append(f"  {impl:>10} {threads} thr {measures:>6}  median {median * 1e3:10.3f} ms"
                         f"  per option {median / timed * 1e9:10.1f} ns  ({timed:,} options)")
        ours = per.get(("pricegrid", 1, "price"))
        lines.append(f"  ours (price, 1 thread) vs QuantLib per option: {ratio(per.get(('quantlib', 1, 'price')), ours)}")
        lines.append(f"  ours 2 threads vs 1 thread:                    {ratio(ours, per.get(('pricegrid', 2, 'price')))}")
        lines.append(f"  price + 6 Greeks vs price (cost, 1 thread):    {ratio(per.get(('pricegrid', 1, 'greeks')), ours)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(report(load(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
