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


def name_defaults(parser) -> None:
    """Every option's help in ``parser`` and its subcommands ends with its default, unless the
    help already says it or there is none to say (a flag off by default, an unset value)."""
    import argparse

    seen, todo = set(), [parser]
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
                continue
            default = action.default
            if (action.help == argparse.SUPPRESS or not action.option_strings or default in (None, False, "", [])
                    or default is argparse.SUPPRESS or "default" in (action.help or "").lower()):
                continue
            if isinstance(default, (list, tuple)):
                default = ",".join(map(str, default))
            text = f"default: {default}".replace("%", "%%")
            action.help = f"{action.help} ({text})" if action.help else text
