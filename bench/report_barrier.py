"""Per-product times and ratios from a pytest-benchmark JSON file of bench/test_bench_barrier.py.

    .venv/bin/python bench/report_barrier.py /tmp/bench_barrier.json

For each product it prints the median time per call and per option of every
implementation, then (as "how many times faster", ratios of medians from that one run):
ours (1 thread, price) vs the QuantLib loop per option, ours 2 threads vs 1 thread, and
the cost of all ten measures against the price alone.
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
        for (impl, threads, measures), (median, timed) in sorted(cases.items()):
            per[(impl, threads, measures)] = median / timed
            lines.append(f"  {impl:>10} {threads} thread{'s' if threads > 1 else ' '} {measures:>5}"
                         f"  median {median * 1e3:11.3f} ms  per option {median / timed * 1e9:11.1f} ns"
                         f"  ({timed:,} options)")
        ours = per.get(("pricegrid", 1, "price"))
        lines.append(f"  QuantLib loop / ours (1 thread), per option: {ratio(per.get(('quantlib', 1, 'price')), ours)}")
        lines.append(f"  ours 1 thread / 2 threads:                   {ratio(ours, per.get(('pricegrid', 2, 'price')))}")
        lines.append(f"  ours all ten measures / price only:          {ratio(per.get(('pricegrid', 1, 'all')), ours)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(report(load(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
