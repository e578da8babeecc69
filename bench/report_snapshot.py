"""Report of bench/test_bench_snapshot.py: a batch against a snapshot vs flat inline inputs.

    .venv/bin/python bench/report_snapshot.py /tmp/snap.json
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    data = json.load(open(argv[1]))
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "snapshot_s" in info:
            s, i = info["snapshot_s"], info["inline_s"]
            print(f"{info['rows']:,} rows, price + 5 Greeks, one thread, {info['pairs']} interleaved rounds (medians):")
            print(f"  against the demo snapshot (2 curve + 1 SVI lookups per row): {s * 1e3:9.2f} ms")
            print(f"  flat inline inputs:                                        {i * 1e3:9.2f} ms")
            if "per_row_s" in info:
                print(f"  the snapshot's numbers inline, per-row columns:            {info['per_row_s'] * 1e3:9.2f} ms")
            print(f"  snapshot / flat inline (target <= 1.3):                    {s / i:9.2f}x")
            if "per_row_s" in info:
                print(f"  snapshot / per-row inline:                                 {s / info['per_row_s']:9.2f}x")
            if "snapshot_reused_s" in info:
                sr, ir = info["snapshot_reused_s"], info["inline_reused_s"]
                print("  outputs reused call after call (no page faults, as in `pricegrid serve`):")
                print(f"    against the demo snapshot:                               {sr * 1e3:9.2f} ms")
                print(f"    flat inline inputs:                                      {ir * 1e3:9.2f} ms")
                print(f"    snapshot / flat inline:                                  {sr / ir:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
