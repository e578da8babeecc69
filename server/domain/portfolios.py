"""Stored portfolios, scenario sets and backtest histories: named, versioned, kept as the
bytes of their contract messages (the domain does not read them: the RPC layer parses them
as a run would).

A version's id is the first 32 hex digits of the SHA-256 of its name and content, so the
same content put twice under one name is stored once; a name's newest version is the one a
run by name uses.

A backtest history grows by appending: a new version is its base's days and more, stored
only while the base is still the name's newest version (:class:`NotNewest` otherwise), so
that appends to one name are serialized and none is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from pricegrid.server.domain.errors import invalid

_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
#: the largest stored portfolio (its serialized contract message)
MAX_PORTFOLIO_BYTES = 256 << 20


@dataclass(frozen=True)
class StoredPortfolio:
    """A stored version; ``content`` is None in listings."""

    portfolio_id: str
    name: str
    description: str
    stored_at: dt.datetime
    books: int
    trades: int
    content: Optional[bytes] = None


@dataclass(frozen=True)
class StoredScenarioSet:
    """A stored scenario set's version; ``content`` is None in listings."""

    set_id: str
    name: str
    description: str
    stored_at: dt.datetime
    scenarios: int
    components: int
    content: Optional[bytes] = None


@dataclass(frozen=True)
class StoredBacktestHistory:
    """A stored backtest history's version; ``content`` is None in listings.
    ``var_convention`` is the contract's VarConvention number (domain.backtest.VarConvention)."""

    history_id: str
    name: str
    description: str
    stored_at: dt.datetime
    observations: int
    exceptions: int
    var_convention: int
    content: Optional[bytes] = None


class NotNewest(Exception):
    """A version was to follow ``expected``, but the name's newest version is ``newest``
    (its id; "" when the name has none)."""

    def __init__(self, expected: str, newest: str):
        super().__init__(f"the newest version is {newest or 'none'}, not {expected}")
        self.expected = expected
        self.newest = newest


def check_name(name: str, field: str = "name") -> str:
    if not _NAME.match(name):
        raise invalid(field, "1-128 characters of letters, digits and . _ - / (got "
                             f"{name[:40]!r}{'...' if len(name) > 40 else ''})")
    return name


def content_id(name: str, content: bytes) -> str:
    h = hashlib.sha256(name.encode("utf-8"))
    h.update(b"\0")
    h.update(content)
    return h.hexdigest()[:32]


class PortfolioStore(Protocol):
    """Where portfolios persist (pricegrid.server.store implements it)."""

    def put_portfolio(self, record: StoredPortfolio) -> bool:
        """Store ``record`` (with its content); False when its id is already stored."""

    def get_portfolio(self, portfolio_id: str) -> Optional[StoredPortfolio]:
        """The version with its content, or None."""

    def latest_portfolio(self, name: str) -> Optional[StoredPortfolio]:
        """The newest version of ``name``, with its content, or None."""

    def list_portfolios(self, name: str = "", limit: int = 100) -> Sequence[StoredPortfolio]:
        """Summaries (no content), newest first."""

    def delete_portfolio(self, portfolio_id: str) -> bool:
        """False when there was no such id."""


class ScenarioSetStore(Protocol):
    """Where named scenario sets persist: as PortfolioStore, for scenario sets."""

    def put_scenario_set(self, record: StoredScenarioSet) -> bool: ...

    def get_scenario_set(self, set_id: str) -> Optional[StoredScenarioSet]: ...

    def latest_scenario_set(self, name: str) -> Optional[StoredScenarioSet]: ...

    def list_scenario_sets(self, name: str = "", limit: int = 100) -> Sequence[StoredScenarioSet]: ...

    def delete_scenario_set(self, set_id: str) -> bool: ...


class BacktestHistoryStore(Protocol):
    """Where backtest histories persist: as PortfolioStore, and puts that keep a name's
    versions in the order they were put."""

    def put_backtest_history(self, record: StoredBacktestHistory, after: Optional[str] = None
                             ) -> tuple[bool, StoredBacktestHistory]:
        """Store ``record`` as the newest version of its name, atomically: its stored_at is
        moved to a microsecond after the newest version's when it is not later already;
        with ``after`` (an id), only while the name's newest version is that one (else
        :class:`NotNewest`). Returns (created, the record as stored); (False, the stored
        one) when its id is already stored."""

    def get_backtest_history(self, history_id: str) -> Optional[StoredBacktestHistory]: ...

    def latest_backtest_history(self, name: str) -> Optional[StoredBacktestHistory]: ...

    def list_backtest_histories(self, name: str = "", limit: int = 100) -> Sequence[StoredBacktestHistory]: ...

    def delete_backtest_history(self, history_id: str) -> bool: ...
