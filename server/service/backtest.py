"""Backtesting of VaR models as a use case: a running backtest fed observations in pieces.

    bt = Backtest(BacktestSettings(level=0.99, window=250), BacktestLimits())
    bt.add(pnl_week_1, var_week_1)          # -> BacktestResult over week 1
    bt.add(pnl_week_2, var_week_2, labels)  # -> over weeks 1 and 2

``add`` costs O(new observations): the state is the counts the statistics need (days,
exceptions, transition counts, the day before's state), the exceptions of the latest window
(their indices, at most one per day of the window) and the newest exceptions for the reply.
The traffic light's binomial table is cached by window length; until the window is full its
length grows with every message, and a new table costs O(n p + sqrt(n p)) for n days
(microseconds at Basel's 250).
The result after any sequence of ``add`` calls equals the result of one ``add`` of all the
observations (tests/server/domain/test_backtest.py checks it at every step). The statistics
are pricegrid.server.domain.backtest's.

A bad message raises ServiceError naming every bad value and adds nothing; the caps raise
RESOURCE_EXHAUSTED before the values are read.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from pricegrid.server.domain import backtest as bt
from pricegrid.server.domain.backtest import BacktestResult, BacktestSettings
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid

__all__ = ["Backtest", "BacktestLimits", "NEWEST_EXCEPTIONS", "backtest"]

#: exceptions listed in each result, the newest
NEWEST_EXCEPTIONS = 50


@dataclass(frozen=True)
class BacktestLimits:
    """Caps on one backtest stream (RESOURCE_EXHAUSTED beyond them)."""

    max_observations: int = 1_000_000  # per stream
    max_message_observations: int = 100_000  # per add()


class Backtest:
    """A running backtest (see the module docstring). Not thread-safe: one stream, one
    message at a time."""

    def __init__(self, settings: BacktestSettings = BacktestSettings(), limits: BacktestLimits = BacktestLimits()):
        settings.violations().raise_if_any()
        self.settings = settings
        self.limits = limits
        self.observations = 0
        self.exceptions = 0
        self.transitions = bt.Transitions()
        self._last: Optional[bool] = None  # the latest day's state
        self._window: collections.deque[int] = collections.deque()  # exception indices in the latest window
        self._newest: collections.deque[bt.ExceptionDay] = collections.deque(maxlen=NEWEST_EXCEPTIONS)

    def confirm(self, settings: BacktestSettings, prefix: str = "settings.") -> None:
        """Raises INVALID_ARGUMENT naming each setting that differs from the stream's (a later
        message may repeat the settings, not change them)."""
        bad = Violations()
        for name in ("level", "window", "var_convention"):
            given, held = getattr(settings, name), getattr(self.settings, name)
            if given != held:
                shown = (lambda v: v.name) if name == "var_convention" else repr
                bad.add(f"{prefix}{name}", f"{shown(given)} differs from this stream's {shown(held)}: the first message"
                                          " fixes the settings (a later one may repeat them or leave them out)")
        bad.raise_if_any()

    def check_size(self, k: int) -> None:
        """RESOURCE_EXHAUSTED if a message of ``k`` observations is over a cap (the transport
        asks before it decodes the columns; :meth:`add` asks again)."""
        limits = self.limits
        if k > limits.max_message_observations:
            raise invalid("pnl", f"{k} observations in one message; the server takes at most"
                                 f" {limits.max_message_observations} per message (max_backtest_message_observations)",
                          code=Code.RESOURCE_EXHAUSTED)
        if self.observations + k > limits.max_observations:
            raise invalid("pnl", f"this message would bring the stream to {self.observations + k} observations; the"
                                 f" server takes at most {limits.max_observations} per stream"
                                 " (max_backtest_observations): send the rest on a new stream",
                          code=Code.RESOURCE_EXHAUSTED)

    def add(self, pnl, var, labels: Optional[Sequence[str]] = None) -> BacktestResult:
        """Take the next observations (float64 arrays of equal length, in time order; labels:
        None or one string per observation) and return the running result."""
        pnl = np.asarray(pnl, dtype=np.float64).reshape(-1)
        var = np.asarray(var, dtype=np.float64).reshape(-1)
        k = len(pnl)
        self.check_size(max(k, len(var)))
        start = self.observations
        bad = Violations()
        bt.check_observations(pnl, var, self.settings.var_convention, start, bad)
        if labels is not None and len(labels):
            bt.check_labels(labels, k, bad)
        else:
            labels = None
        bad.raise_if_any()
        if k == 0:
            return self.result()

        flags = bt.exception_flags(pnl, var, self.settings.var_convention)
        self.transitions = self.transitions + bt.count_transitions(flags, self._last)
        self._last = bool(flags[-1])
        hits = np.flatnonzero(flags)
        self.exceptions += len(hits)
        self.observations += k
        # the latest window's exceptions: at most `window` of them are kept
        window = self.settings.window
        for i in hits[-min(len(hits), window):].tolist():
            self._window.append(start + i)
        first = self.observations - window
        while self._window and self._window[0] < first:
            self._window.popleft()
        for i in hits[-NEWEST_EXCEPTIONS:].tolist():
            self._newest.append(bt.ExceptionDay(start + i, labels[i] if labels is not None else "",
                                                float(pnl[i]), float(var[i])))
        return self.result()

    def add_stored(self, pnl, var, labels: Optional[Sequence[str]] = None, should_continue=None,
                   path: str = "history") -> BacktestResult:
        """Take a stored history's days (checked when they were stored) as the next
        observations: the stream's cap applies (RESOURCE_EXHAUSTED naming ``path``), the
        per-message cap does not (they go in pieces of max_message_observations, the same
        result as one piece; ``should_continue`` (a Watch) is asked between pieces)."""
        n = len(pnl)
        if self.observations + n > self.limits.max_observations:
            raise invalid(path, f"{n} stored observations bring the stream to {self.observations + n}; the server"
                                f" takes at most {self.limits.max_observations} per stream"
                                " (max_backtest_observations)", code=Code.RESOURCE_EXHAUSTED)
        step = self.limits.max_message_observations
        result = self.result()
        for start in range(0, n, step):
            if should_continue is not None:
                stop = should_continue()
                if stop is not None:
                    raise ServiceError(stop, f"stopped reading {path} at observation {start} of {n}")
            try:
                result = self.add(pnl[start:start + step], var[start:start + step],
                                  None if labels is None else labels[start:start + step])
            except ServiceError as exc:  # not expected: the days were checked when they were stored
                raise ServiceError(exc.code, f"{path}: {exc.message}",
                                   [FieldViolation(f"{path}.{v.field}", v.description) for v in exc.violations]
                                   ) from None
        return result

    def result(self) -> BacktestResult:
        s = self.settings
        n, x = self.observations, self.exceptions
        pof = bt.kupiec_pof(n, x, s.p)
        ind = bt.christoffersen_independence(self.transitions)
        return BacktestResult(
            settings=s,
            observations=n,
            exceptions=x,
            expected_exceptions=n * s.p,
            newest_exceptions=tuple(self._newest),
            kupiec_pof=pof,
            christoffersen_independence=ind,
            conditional_coverage=bt.conditional_coverage(pof, ind),
            transitions=self.transitions,
            traffic_light=bt.traffic_light(len(self._window), min(n, s.window), s.p),
        )


def backtest(pnl, var, settings: BacktestSettings = BacktestSettings(), labels=None,
             limits: BacktestLimits = BacktestLimits(max_message_observations=1 << 62, max_observations=1 << 62)
             ) -> BacktestResult:
    """The result of one batch of observations (what a stream of one message returns)."""
    return Backtest(settings, limits).add(pnl, var, labels)
