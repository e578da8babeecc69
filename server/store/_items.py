"""What the SQLite and PostgreSQL stores share: the named-item protocols (PortfolioStore,
ScenarioSetStore, BacktestHistoryStore) over a backend's table operations, the rule of a
name's next version, and a stored snapshot read from its row."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Optional

from pricegrid.server.domain.market import Finding, Severity, Snapshot, StoredSnapshot
from pricegrid.server.domain.portfolios import NotNewest, StoredBacktestHistory, StoredPortfolio, StoredScenarioSet

#: each named-item table's columns (all but content, in its record type's field order) and its record type
ITEMS = {"portfolios": ("id, name, description, stored_at, books, trades", StoredPortfolio),
         "scenario_sets": ("id, name, description, stored_at, scenarios, components", StoredScenarioSet),
         "backtest_histories": ("id, name, description, stored_at, observations, exceptions, var_convention",
                                StoredBacktestHistory)}


def row_of(record) -> list:
    """A record's column values in its table's order, content last."""
    return [getattr(record, f.name) for f in dataclasses.fields(record)]


def record_of(kind, row, convert_time):
    """The record of ``kind`` from a row of its columns (content last, when selected);
    ``convert_time`` reads the backend's stored_at."""
    n = len(dataclasses.fields(kind)) - 1  # the columns before content
    return kind(*row[:3], convert_time(row[3]), *row[4:n], bytes(row[n]) if len(row) > n else None)


def snapshot_record(row, convert_time, *, with_content: bool) -> StoredSnapshot:
    """A StoredSnapshot from a row of the snapshots table (its content the canonical JSON in
    column 12, read only ``with_content``); ``convert_time`` reads the backend's times."""
    findings = tuple(Finding(Severity(s), c, f, m) for s, c, f, m in json.loads(row[9]))
    snapshot = Snapshot.from_canonical(json.loads(row[12])) if with_content else None
    return StoredSnapshot(row[0], row[1], convert_time(row[2]), convert_time(row[3]), (row[4], row[5], row[6], row[10]),
                          row[7], row[8], findings, snapshot, row[11])


def after_newest(record, newest: Optional[tuple], after: Optional[str]):
    """``record`` as the next version of its name, given the name's newest version
    ``newest`` ((id, stored_at as an aware UTC datetime) or None), read under the backend's
    lock: NotNewest when ``after`` is given and is not that newest id; its stored_at moved to
    a microsecond past the newest's when the clock says otherwise."""
    if after is not None and (newest is None or newest[0] != after):
        raise NotNewest(after, newest[0] if newest else "")
    if newest is not None:
        floor = newest[1] + dt.timedelta(microseconds=1)
        if record.stored_at < floor:
            return dataclasses.replace(record, stored_at=floor)
    return record


def name_lock_key(table: str, name: str) -> int:
    """A signed 64-bit key for one name of one table (PostgreSQL's advisory locks)."""
    digest = hashlib.sha256(f"{table}\0{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class NamedItems:
    """Portfolios, scenario sets and backtest histories, each a table of ITEMS, through the
    backend's ``_put_item``, ``_put_newest``, ``_get_item``, ``_latest_item``, ``_list_items``
    and ``_delete_item``."""

    def put_portfolio(self, record: StoredPortfolio) -> bool:
        return self._put_item("portfolios", record)

    def get_portfolio(self, portfolio_id: str) -> Optional[StoredPortfolio]:
        return self._get_item("portfolios", portfolio_id)

    def latest_portfolio(self, name: str) -> Optional[StoredPortfolio]:
        return self._latest_item("portfolios", name)

    def list_portfolios(self, name: str = "", limit: int = 100):
        return self._list_items("portfolios", name, limit)

    def delete_portfolio(self, portfolio_id: str) -> bool:
        return self._delete_item("portfolios", portfolio_id)

    def put_scenario_set(self, record: StoredScenarioSet) -> bool:
        return self._put_item("scenario_sets", record)

    def get_scenario_set(self, set_id: str) -> Optional[StoredScenarioSet]:
        return self._get_item("scenario_sets", set_id)

    def latest_scenario_set(self, name: str) -> Optional[StoredScenarioSet]:
        return self._latest_item("scenario_sets", name)

    def list_scenario_sets(self, name: str = "", limit: int = 100):
        return self._list_items("scenario_sets", name, limit)

    def delete_scenario_set(self, set_id: str) -> bool:
        return self._delete_item("scenario_sets", set_id)

    def put_backtest_history(self, record: StoredBacktestHistory, after: Optional[str] = None
                             ) -> tuple[bool, StoredBacktestHistory]:
        """See pricegrid.server.domain.portfolios.BacktestHistoryStore."""
        return self._put_newest("backtest_histories", record, after)

    def get_backtest_history(self, history_id: str) -> Optional[StoredBacktestHistory]:
        return self._get_item("backtest_histories", history_id)

    def latest_backtest_history(self, name: str) -> Optional[StoredBacktestHistory]:
        return self._latest_item("backtest_histories", name)

    def list_backtest_histories(self, name: str = "", limit: int = 100):
        return self._list_items("backtest_histories", name, limit)

    def delete_backtest_history(self, history_id: str) -> bool:
        return self._delete_item("backtest_histories", history_id)
