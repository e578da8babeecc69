"""Per-point times and ratios from a pytest-benchmark JSON file of bench/test_bench_curves.py.

    .venv/bin/python bench/report_curves.py /tmp/bench_curves.json

For unsorted and sorted query times it prints the median time per call and per point of
every implementation, then (as "how many times faster", ratios of medians per point from that
one run): the QuantLib loop and np.interp against ours (log-linear, 1 thread), and ours on
2 threads against 1.
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
        for (impl, threads, interpolation), (median, timed) in sorted(cases.items()):
            per[(impl, threads, interpolation)] = median / timed
            lines.append(f"  {impl:>10} {interpolation:>16} {threads} thread{'s' if threads > 1 else ' '}"
                         f"  median {median * 1e3:10.3f} ms  per point {median / timed * 1e9:9.2f} ns"
                         f"  ({timed:,} points)")
        ours = per.get(("pricegrid", 1, "log_linear"))
        lines.append(f"  QuantLib DiscountCurve.discount loop / ours (log-linear, 1 thread), per point: "
                     f"{ratio(per.get(('quantlib', 1, 'log_linear')), ours)}")
        lines.append(f"  np.interp on ln DF / ours (log-linear, 1 thread), per point:                "
                     f"{ratio(per.get(('numpy', 1, 'log_linear')), ours)}")
        lines.append(f"  ours 1 thread / 2 threads (log-linear):                                     "
                     f"{ratio(ours, per.get(('pricegrid', 2, 'log_linear')))}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(report(load(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
