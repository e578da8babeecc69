"""Print the median times and speed-ups of bench/test_bench_implied_vol.py from its JSON.

    .venv/bin/python bench/report_implied_vol.py bench/results/implied_vol.json

One line per (rows, implementation, threads): median time, ns per row, the speed-up over
py_vollib_vectorized at the same row count, and the recorded accuracy.
"""

from __future__ import annotations

import json
import sys

BASELINE = "py_vollib_vectorized"


def main(path: str) -> int:
    with open(path) as f:
        benches = json.load(f)["benchmarks"]
    rows = {}
    for b in benches:
        info = b.get("extra_info", {})
        rows[(info.get("n"), info.get("impl"), info.get("threads"))] = (b["stats"]["median"], info)
    base = {n: med for (n, impl, _), (med, _) in rows.items() if impl == BASELINE}
    print(f"{'rows':>8} {'implementation':<22} {'thr':>3} {'median':>11} {'ns/row':>9} {'speed-up':>9} "
          f"{'max rel err':>12} {'median err':>11} {'NaN':>5}")
    for (n, impl, threads), (med, info) in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != BASELINE, kv[0][2])):
        ratio = base.get(n, float("nan")) / med if impl != BASELINE else 1.0
        fmt = lambda v: f"{v:.2e}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"{n:>8} {impl:<22} {threads:>3} {med * 1e6:>9.1f}us {med / n * 1e9:>9.1f} {ratio:>8.2f}x "
              f"{fmt(info.get('max_rel_err')):>12} {fmt(info.get('median_rel_err')):>11} {info.get('nan_rows', '-'):>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/implied_vol.json"))
