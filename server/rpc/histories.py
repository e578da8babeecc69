"""Stored backtest histories (proto <-> domain): PutBacktestHistory, a new history or days
appended to one, its Get, List and Delete, and a history's days for a Backtest stream.

A version's content is its BacktestHistory message in one canonical form (columns as raw
little-endian float64, var_convention filled in, labels left out when every one is empty;
deterministic serialization), so that its id, the SHA-256 of name and content, depends on
the days alone and not on how a request spelled them.

An append reads its base (the name's newest version, or ``base_id``), checks the new days
against it (its var_convention, the stream cap over both), and asks the store to write the
base's days and the new ones only while the base is still the name's newest version. When
another append got there first, an append to the newest reads the new newest and tries
again (a few times); an append to ``base_id`` is refused with ABORTED, unless the newest is
exactly what it would store (a retried call): then it is answered with that version.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from pricegrid.server.domain import backtest as bt
from pricegrid.server.domain import portfolios as pf
from pricegrid.server.domain.errors import Code, ServiceError, Violations, invalid
from pricegrid.server.rpc import portfolios as pfs
from pricegrid.server.rpc.requests import column_length, doubles, unknown_enums
from pricegrid.server.service.backtest import BacktestLimits
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import risk_pb2 as rpb

__all__ = ["Days", "days_of", "put_history", "history_message", "list_histories", "MAX_DESCRIPTION",
           "APPEND_TRIES"]

MAX_DESCRIPTION = 4096
#: how many times an append to the newest version reads the newest again when others appended first
APPEND_TRIES = 8
_CONVENTIONS = {int(c): c for c in bt.VarConvention}


@dataclass(frozen=True)
class Days:
    """A history's days: pnl and var (float64), labels (None: none), the var convention."""

    pnl: np.ndarray
    var: np.ndarray
    labels: Optional[list[str]]
    var_convention: bt.VarConvention


def days_of(record: pf.StoredBacktestHistory) -> Days:
    msg = rpb.BacktestHistory.FromString(record.content)
    return Days(doubles(msg.pnl, "history.pnl"), doubles(msg.var, "history.var"), list(msg.labels) or None,
                _CONVENTIONS[msg.var_convention])


def _content(days: Days) -> bytes:
    labels = days.labels if days.labels is not None and any(days.labels) else []
    msg = rpb.BacktestHistory(pnl=cpb.DoubleColumn(raw=np.ascontiguousarray(days.pnl, "<f8").tobytes()),
                              var=cpb.DoubleColumn(raw=np.ascontiguousarray(days.var, "<f8").tobytes()),
                              labels=labels, var_convention=int(days.var_convention))
    return msg.SerializeToString(deterministic=True)


def _joined(base: Optional[Days], new: Days) -> Days:
    """The base's days followed by the new ones; a day without a label has the label ""."""
    if base is None:
        return new
    labels = None
    if base.labels is not None or new.labels is not None:
        labels = (base.labels or [""] * len(base.pnl)) + (new.labels or [""] * len(new.pnl))
    return Days(np.concatenate([base.pnl, new.pnl]), np.concatenate([base.var, new.var]), labels,
                new.var_convention)


def _base(request: rpb.PutBacktestHistoryRequest, store, bad: Violations) -> Optional[pf.StoredBacktestHistory]:
    """The version an append extends (None: not found, violation added)."""
    if request.base_id:
        record = store.get_backtest_history(request.base_id)
        if record is None:
            bad.add("base_id", f"no backtest history version {request.base_id!r} is stored", Code.NOT_FOUND)
        elif record.name != request.name:
            bad.add("base_id", f"{request.base_id!r} is a version of {record.name!r}, not of {request.name!r}")
            return None
        return record
    record = store.latest_backtest_history(request.name)
    if record is None:
        bad.add("name", f"no backtest history named {request.name!r} to append to: put its first days without "
                        "append", Code.NOT_FOUND)
    return record


def _against_base(request, base: Optional[pf.StoredBacktestHistory], pnl, var, limits: BacktestLimits,
                  bad: Violations) -> Optional[bt.VarConvention]:
    """The new days' convention, their values checked by it, and the version's size capped."""
    given = request.history.var_convention
    start = base.observations if base is not None else 0
    if base is not None:
        held = bt.VarConvention(base.var_convention)
        if given and given in _CONVENTIONS and given != held:
            bad.add("history.var_convention", f"{_CONVENTIONS[given].name} differs from {base.name!r} version "
                                              f"{base.history_id}'s {held.name}: an append keeps the convention "
                                              "(leave it unset to take it)")
        convention = held
    else:
        convention = _CONVENTIONS.get(given, bt.VarConvention.LOSS)
    if pnl is not None and start + len(pnl) > limits.max_observations:
        bad.add("history.pnl", f"{start:,} stored + {len(pnl):,} days = {start + len(pnl):,} observations; at most "
                               f"{limits.max_observations:,} (the server's max_backtest_observations)",
                Code.RESOURCE_EXHAUSTED)
    if pnl is not None and var is not None:
        bt.check_observations(pnl, var, convention, start, bad, prefix="history.", where="history index")
    return convention


def put_history(request: rpb.PutBacktestHistoryRequest, store: pf.BacktestHistoryStore,
                now: Callable[[], dt.datetime], limits: BacktestLimits) -> rpb.PutBacktestHistoryResponse:
    """Store a new history, or a new version with days appended (see the module docstring);
    every violation of the request at once, the size capped before the days are read."""
    bad = Violations()
    named = False
    with bad.check():
        named = bool(pf.check_name(request.name))
    if len(request.description) > MAX_DESCRIPTION:
        bad.add("description", f"at most {MAX_DESCRIPTION:,} characters (got {len(request.description):,})")
    unknown_enums(request, "", bad)
    h = request.history
    k = 0
    for name in ("pnl", "var"):
        with bad.check():
            k = max(k, column_length(getattr(h, name), 8, f"history.{name}"))
    append = request.append or bool(request.base_id)
    base = None
    if append and named:
        base = _base(request, store, bad)
    start = base.observations if base is not None else 0
    if start + k > limits.max_observations:  # before the days are read
        bad.add("history.pnl", f"{start:,} stored + {k:,} days = {start + k:,} observations; at most "
                               f"{limits.max_observations:,} (the server's max_backtest_observations)",
                Code.RESOURCE_EXHAUSTED)
        bad.raise_if_any()
    pnl = var = None
    with bad.check():
        pnl = doubles(h.pnl, "history.pnl")
    with bad.check():
        var = doubles(h.var, "history.var")
    if pnl is not None and not len(pnl):
        bad.add("history.pnl", "required: at least one day" + (" to append" if append else ""))
    if pnl is not None:
        bt.check_labels(h.labels, len(pnl), bad, "history.")
    if append and base is None:  # (its violation is named: a bad name, or no such base)
        bad.raise_if_any()
    convention = _against_base(request, base, pnl, var, limits, bad)
    bad.raise_if_any()
    new = Days(pnl, var, list(h.labels) or None, convention)
    if not append:
        created, stored = store.put_backtest_history(_record(request, None, new, now))
        return _response(stored, created)
    for _ in range(APPEND_TRIES):
        record = _record(request, base, new, now)
        try:
            created, stored = store.put_backtest_history(record, after=base.history_id)
            return _response(stored, created)
        except pf.NotNewest as e:
            if request.base_id and e.newest == record.history_id:  # appended already (a retried call)
                stored = store.get_backtest_history(e.newest)
                if stored is not None:
                    return _response(stored, False)
            if request.base_id:
                raise invalid("base_id", f"{request.base_id} is no longer the newest version of {request.name!r} "
                                         f"(now {e.newest or 'none'}): append to the newest",
                              code=Code.ABORTED) from None
        # another append got there first: append to the new newest
        again = Violations()
        base = _base(request, store, again)
        again.raise_if_any()
        convention = _against_base(request, base, pnl, var, limits, again)
        again.raise_if_any()
        new = Days(pnl, var, new.labels, convention)
    raise invalid("append", f"{APPEND_TRIES} other appends to {request.name!r} came first; try again",
                  code=Code.ABORTED)


def _record(request, base: Optional[pf.StoredBacktestHistory], new: Days, now) -> pf.StoredBacktestHistory:
    days = _joined(days_of(base) if base is not None else None, new)
    content = _content(days)
    if len(content) > pf.MAX_PORTFOLIO_BYTES:
        raise invalid("history", f"{len(content):,} bytes; at most {pf.MAX_PORTFOLIO_BYTES:,}",
                      code=Code.RESOURCE_EXHAUSTED)
    description = request.description or (base.description if base is not None else "")
    exceptions = int(np.count_nonzero(bt.exception_flags(days.pnl, days.var, days.var_convention)))
    return pf.StoredBacktestHistory(pf.content_id(request.name, content), request.name, description, now(),
                                    len(days.pnl), exceptions, int(days.var_convention), content)


def _response(record: pf.StoredBacktestHistory, created: bool) -> rpb.PutBacktestHistoryResponse:
    return rpb.PutBacktestHistoryResponse(backtest_history=history_message(record, with_content=False),
                                          created=created)


def history_message(record: pf.StoredBacktestHistory, *, with_content: bool) -> rpb.StoredBacktestHistory:
    msg = rpb.StoredBacktestHistory(id=record.history_id, name=record.name, description=record.description,
                                    stored_at=pfs.rfc3339(record.stored_at), observations=record.observations,
                                    exceptions=record.exceptions, var_convention=record.var_convention)
    if with_content and record.content is not None:
        msg.history.ParseFromString(record.content)
    return msg


def list_histories(request: rpb.ListBacktestHistoriesRequest, store) -> rpb.ListBacktestHistoriesResponse:
    limit = request.limit or 100
    if not 1 <= limit <= 1000:
        raise invalid("limit", f"1-1000 (got {request.limit})")
    return rpb.ListBacktestHistoriesResponse(backtest_histories=[
        history_message(r, with_content=False) for r in store.list_backtest_histories(request.name, limit)])
