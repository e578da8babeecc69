"""The CPU check at start: the kernels are compiled for a CPU target (``-march``; native by
default) and use its instructions; on a machine without them they would die of SIGILL at the
first batch. The build records the features it may use (BUILD_INFO["cpu_features"], in
/proc/cpuinfo's names); the server compares them with this machine's and refuses to start,
naming what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional


def machine_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> Optional[set[str]]:
    """This machine's CPU feature flags, or None where /proc/cpuinfo does not say (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def missing(required: Iterable[str], available: Optional[set[str]]) -> list[str]:
    """The required features this machine lacks ([] when it cannot tell)."""
    if available is None:
        return []
    return sorted(set(required) - available)


def check(build_info: dict, available: Optional[set[str]] = None) -> Optional[str]:
    """Why the kernels cannot run here, or None."""
    lacking = missing(build_info.get("cpu_features", ()),
                      machine_features() if available is None else available)
    if not lacking:
        return None
    return (f"the kernels were built for -march={build_info.get('cpu_target')} and use CPU features this machine "
            f"lacks: {', '.join(lacking)}. Rebuild here (pip install --force-reinstall --no-cache-dir .) or build "
            "for a portable target (PRICEGRID_CPU_TARGET=x86-64-v3)")
