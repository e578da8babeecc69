"""Per-option times, speed-ups and errors from a pytest-benchmark JSON of bench/test_bench_american.py.

    .venv/bin/python bench/report_american.py /tmp/bench_american.json

Prints, per implementation, the median per call and per option and the max / mean absolute
error against QuantLib's high-precision scheme; then each of ours against QuantLib's accurate
scheme (ratio of per-option medians, "how many times faster").
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        data = json.load(f)
    rows = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "impl" not in info:
            continue
        key = (info["impl"], info["scheme"], info["threads"])
        rows[key] = (bench["stats"]["median"] / info["timed_rows"], bench["stats"]["median"], info)
    for (impl, scheme, threads), (per, med, info) in sorted(rows.items()):
        print(f"{impl:>9} {scheme:>8} {threads} thread{'s' if threads > 1 else ' '}  median {med * 1e3:10.3f} ms"
              f"  per option {per * 1e6:9.3f} us  ({info['timed_rows']:,} options)"
              f"  err vs QL high: max {info['max_abs_err_vs_ql_high']:.2e} mean {info['mean_abs_err_vs_ql_high']:.2e}")
    base = rows.get(("quantlib", "accurate", 1))
    if base:
        for (impl, scheme, threads), (per, _, _) in sorted(rows.items()):
            if impl == "pricegrid":
                print(f"ours {scheme} ({threads} thread{'s' if threads > 1 else ''}) vs QuantLib accurate, per option: "
                      f"{base[0] / per:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
