"""Per-point times and ratios from a pytest-benchmark JSON file of bench/test_bench_surfaces.py.

    .venv/bin/python bench/report_surfaces.py /tmp/bench_surfaces.json

It prints the median time per call and per point of every implementation and surface, then
(as "how many times faster", ratios of medians per point from that one run): the QuantLib
loop against ours on 1 thread for each surface, and ours on 2 threads against 1 (grid).
"""

from __future__ import annotations

import sys

from _report import load, ratio  # bench/ is the script's own folder

BASELINES = {
    "grid": "QuantLib BlackVarianceSurface.blackVol loop",
    "svi": "QuantLib SviSmileSection.volatility loop (one slice)",
    "sabr": "QuantLib sabrVolatility loop (one slice)",
}


def report(table: dict) -> str:
    lines = []
    for product in sorted(table):
        cases = table[product]
        lines.append(product)
        per = {}
        for (impl, threads, surface), (median, timed) in sorted(cases.items()):
            per[(impl, threads, surface)] = median / timed
            lines.append(f"  {impl:>10} {surface:>5} {threads} thread{'s' if threads > 1 else ' '}"
                         f"  median {median * 1e3:10.3f} ms  per point {median / timed * 1e9:9.2f} ns"
                         f"  ({timed:,} points)")
        for surface, name in BASELINES.items():
            lines.append(f"  {name + ' / ours (1 thread), per point:':<84}"
                         f"{ratio(per.get(('quantlib', 1, surface)), per.get(('pricegrid', 1, surface)))}")
        lines.append(f"  {'ours 1 thread / 2 threads (grid):':<84}"
                     f"{ratio(per.get(('pricegrid', 1, 'grid')), per.get(('pricegrid', 2, 'grid')))}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(report(load(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
