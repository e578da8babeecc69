"""Paths per second and speed-ups of bench/test_bench_montecarlo.py from its JSON.

    .venv/bin/python bench/report_montecarlo.py /tmp/bench_mc.json

One line per (case, implementation, threads): median time per call, paths per second and
ns per path-step; then per case the ratios of medians: ours (1 thread) vs numpy, and ours
with 2 threads vs 1 thread (each as "how many times faster").
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    with open(path) as f:
        benches = json.load(f)["benchmarks"]
    table = {}
    for b in benches:
        info = b.get("extra_info", {})
        if "impl" in info:
            table[(info["case"], info["impl"], info["threads"])] = (b["stats"]["median"], info)
    cases = sorted({case for case, _, _ in table})
    print(f"{'case':<14} {'implementation':<10} {'thr':>3} {'median':>11} {'paths/s':>12} {'ns/path-step':>13} "
          f"{'load':>5}")
    for case in cases:
        for key in sorted(k for k in table if k[0] == case):
            med, info = table[key]
            print(f"{case:<14} {key[1]:<10} {key[2]:>3} {med * 1e3:>9.2f}ms {info['paths'] / med:>12.3e} "
                  f"{med / (info['paths'] * info['steps']) * 1e9:>13.2f} {info.get('loadavg_after', float('nan')):>5.2f}")
    print()
    for case in cases:
        one = table.get((case, "pricegrid", 1), (None,))[0]
        two = table.get((case, "pricegrid", 2), (None,))[0]
        base = table.get((case, "numpy", 1), (None,))[0]
        vs_numpy = f"{base / one:.2f}x" if base and one else "n/a"
        scaling = f"{one / two:.2f}x" if one and two else "n/a"
        print(f"{case:<14} ours (1 thread) vs numpy: {vs_numpy:>7}   ours 2 threads vs 1: {scaling:>6}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1]))
