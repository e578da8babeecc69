"""Shared by the per-family reports: read a pytest-benchmark JSON file into a table."""

from __future__ import annotations

import json
from collections import defaultdict


def load(path: str) -> dict:
    """{product: {(impl, threads, measures): (median seconds per call, options per call)}}"""
    with open(path) as f:
        data = json.load(f)
    table: dict = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "product" not in info:
            continue
        key = (info["impl"], info["threads"], info["measures"])
        table[info["product"]][key] = (bench["stats"]["median"], info["timed_rows"])
    return table


def ratio(slow: float | None, fast: float | None) -> str:
    return f"{slow / fast:10.1f}x" if slow and fast else f"{'n/a':>11}"
