"""Plain-text tables for the CLI and the benchmark: aligned columns, numbers to the right."""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence


def cell(value, precision: int = 10) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        return f"{value:.{precision}g}"
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table(headers: Sequence[str] | None, rows: Iterable[Sequence], *, precision: int = 10, indent: str = "") -> str:
    """Rows as aligned text: numeric cells right-aligned, the rest left-aligned."""
    body = [[cell(v, precision) for v in row] for row in rows]
    lines = ([list(headers)] if headers else []) + body
    if not lines:
        return ""
    ncols = max(len(r) for r in lines)
    lines = [r + [""] * (ncols - len(r)) for r in lines]
    widths = [max(len(r[i]) for r in lines) for i in range(ncols)]
    right = [all(_numeric(r[i]) or r[i] == "" for r in body) and any(r[i] for r in body) for i in range(ncols)]
    out = []
    for k, r in enumerate(lines):
        parts = [r[i].rjust(widths[i]) if right[i] else r[i].ljust(widths[i]) for i in range(ncols)]
        out.append(indent + "  ".join(parts).rstrip())
        if headers and k == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(out)


def key_values(pairs: Iterable[tuple[str, object]], *, precision: int = 10, indent: str = "") -> str:
    """``name  value`` lines, names padded to one width."""
    pairs = [(k, cell(v, precision)) for k, v in pairs]
    if not pairs:
        return ""
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}".rstrip() for k, v in pairs)
