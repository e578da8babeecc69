"""pricegrid bench's parsing and report, before any call is made."""

import json

import numpy as np
import pytest

from pricegrid import console
from pricegrid.tools import bench


def parse(*argv):
    return bench.build_parser().parse_args(list(argv))


@pytest.mark.parametrize("argv", [["bench", "latency", "--count", "0"], ["bench", "latency", "--modes", "price,nope"],
                                  ["bench"], ["bench", "nope"]])
def test_usage_errors_exit_2(argv, capsys):
    assert console.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_names_the_defaults(capsys):
    assert console.main(["bench", "latency", "--help"]) == 0
    out = capsys.readouterr().out
    assert "1000000" in out.replace(",", "") and "default" in out


def test_bench_arguments():
    args = parse("latency", "--count", "10", "--duration", "2", "--concurrency", "3",
                 "--batch-rows", "1000", "--modes", "price,batch", "--json", "out.json", "--png", "out.png")
    assert (args.count, args.duration, args.concurrency, args.batch_rows) == (10, 2.0, 3, 1000)
    assert args.modes == ["price", "batch"] and str(args.json_path) == "out.json" and str(args.png) == "out.png"
    defaults = parse("latency")
    assert defaults.batch_rows == 1_000_000 and defaults.modes == ["price", "stream", "batch"]
    assert defaults.count > 0 and defaults.duration > 0  # bounded by default



def test_bench_report_formats_and_ratios():
    report = {
        "target": "t",
        "settings": {"concurrency": 1, "batch_rows": 10},
        "series": {
            name: bench.Series(name, latencies=list(np.linspace(1e-4, 2e-4, 50) * k), wall_seconds=1.0).summary()
            for name, k in (("Echo", 1), ("Price", 2))
        },
        "ratios_p50": {"Price/Echo": 2.0},
        "samples": {},
    }
    text = bench.format_report(report)
    assert "Echo" in text and "Price/Echo p50" in text and "2.00x" in text
    s = report["series"]["Price"]
    assert s["calls"] == 50 and s["p50_s"] == pytest.approx(3e-4) and s["calls_per_second"] == 50.0
    json.dumps(report)
