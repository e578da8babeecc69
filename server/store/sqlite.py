"""The embedded store: market snapshots, portfolios, scenario sets and backtest histories in
one SQLite file (the standard library's sqlite3).

Schema migrations are numbered and run at open (``PRAGMA user_version`` records the last
one applied). A snapshot is kept as its canonical JSON (the form its id hashes), so what is
read back is exactly what was stored. One connection, serialized by a lock: the service's
calls are short, and SQLite allows one writer at a time anyway (WAL lets readers of other
processes go on). A backtest history's new version is written in one IMMEDIATE transaction
(the file's write lock), so that processes sharing the file append to a name one at a time.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import Optional

from pricegrid.server.domain.market import StoredSnapshot
from pricegrid.server.store._items import ITEMS, NamedItems, after_newest, snapshot_record, record_of, row_of

MIGRATIONS = (
    # 1: market snapshots
    """
    CREATE TABLE snapshots (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        as_of         TEXT NOT NULL,      -- ISO 8601, UTC
        stored_at     TEXT NOT NULL,      -- ISO 8601, UTC
        curves        INTEGER NOT NULL,
        underlyings   INTEGER NOT NULL,
        heston        INTEGER NOT NULL,
        description   TEXT NOT NULL,
        forced_reason TEXT NOT NULL,
        findings      TEXT NOT NULL,      -- JSON list of [severity, check, field, message]
        content       TEXT NOT NULL       -- the snapshot's canonical JSON
    );
    CREATE INDEX snapshots_by_name ON snapshots (name, as_of);
    """,
    # 2: volatility surfaces in snapshots
    """
    ALTER TABLE snapshots ADD COLUMN surfaces INTEGER NOT NULL DEFAULT 0
    """,
    # 3: stored portfolios (the contract's Portfolio message, serialized)
    """
    CREATE TABLE portfolios (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        description   TEXT NOT NULL,
        stored_at     TEXT NOT NULL,      -- ISO 8601, UTC
        books         INTEGER NOT NULL,
        trades        INTEGER NOT NULL,
        content       BLOB NOT NULL
    );
    CREATE INDEX portfolios_by_name ON portfolios (name, stored_at)
    """,
    # 4: named scenario sets (the contract's ScenarioSet message, serialized)
    """
    CREATE TABLE scenario_sets (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        description   TEXT NOT NULL,
        stored_at     TEXT NOT NULL,      -- ISO 8601, UTC
        scenarios     INTEGER NOT NULL,
        components    INTEGER NOT NULL,
        content       BLOB NOT NULL
    );
    CREATE INDEX scenario_sets_by_name ON scenario_sets (name, stored_at)
    """,
    # 5: backtest histories (the contract's BacktestHistory message, serialized)
    """
    CREATE TABLE backtest_histories (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL,
        description    TEXT NOT NULL,
        stored_at      TEXT NOT NULL,      -- ISO 8601, UTC
        observations   INTEGER NOT NULL,
        exceptions     INTEGER NOT NULL,
        var_convention INTEGER NOT NULL,   -- the contract's VarConvention number
        content        BLOB NOT NULL
    );
    CREATE INDEX backtest_histories_by_name ON backtest_histories (name, stored_at)
    """,
    # 6: the snapshot a stored snapshot's jumps were measured against (QualityReport.compared_with)
    """
    ALTER TABLE snapshots ADD COLUMN compared_with TEXT NOT NULL DEFAULT ''
    """,
)

_SUMMARY = ("id, name, as_of, stored_at, curves, underlyings, heston, description, forced_reason, findings, surfaces,"
            " compared_with")


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc)


class SqliteSnapshotStore(NamedItems):
    """:class:`pricegrid.server.domain.market.SnapshotStore` and
    :class:`pricegrid.server.domain.portfolios.PortfolioStore` in one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(f"{self.path}: schema version {version} is newer than this pricegrid knows")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.execute("BEGIN")
                try:
                    for statement in filter(str.strip, script.split(";")):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ the protocol
    def put(self, record: StoredSnapshot) -> bool:
        snap = record.snapshot
        row = (
            record.snapshot_id, record.name, record.as_of.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
            record.stored_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"), *record.counts[:3],
            record.description, record.forced_reason,
            json.dumps([[int(f.severity), f.check, f.field, f.message] for f in record.findings]), record.counts[3],
            record.compared_with, snap.canonical_json(),
        )
        with self._lock:
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO snapshots ({_SUMMARY}, content) VALUES ({', '.join('?' * len(row))})", row
            )
            return cursor.rowcount == 1

    def get(self, snapshot_id: str) -> Optional[StoredSnapshot]:
        with self._lock:
            row = self._db.execute(f"SELECT {_SUMMARY}, content FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return None if row is None else self._record(row, with_content=True)

    def list(self, name: str = "", limit: int = 100):
        query = f"SELECT {_SUMMARY} FROM snapshots"
        args: tuple = ()
        if name:
            query += " WHERE name = ?"
            args = (name,)
        query += " ORDER BY as_of DESC, stored_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, args + (int(limit),)).fetchall()
        return [self._record(r, with_content=False) for r in rows]

    def latest(self, name: str, before: dt.datetime, exclude: str = "") -> Optional[StoredSnapshot]:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_SUMMARY}, content FROM snapshots WHERE name = ? AND as_of <= ? AND id != ?"
                " ORDER BY as_of DESC, stored_at DESC, rowid DESC LIMIT 1",
                (name, before.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"), exclude),
            ).fetchone()
        return None if row is None else self._record(row, with_content=True)

    def delete(self, snapshot_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,)).rowcount == 1

    def exists(self, snapshot_id: str, timeout: Optional[float] = None) -> bool:  # (a file: no pool to wait for)
        with self._lock:
            return self._db.execute("SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone() is not None

    @staticmethod
    def _record(row, *, with_content: bool) -> StoredSnapshot:
        return snapshot_record(row, _utc, with_content=with_content)


    # ------------------------------------------------------------------ named items
    @staticmethod
    def _row(record) -> tuple:
        v = row_of(record)
        v[3] = _iso(v[3])
        return tuple(v)

    def _insert(self, table: str, record) -> bool:
        row = self._row(record)
        cursor = self._db.execute(f"INSERT OR IGNORE INTO {table} ({ITEMS[table][0]}, content) "
                                  f"VALUES ({', '.join('?' * len(row))})", row)
        return cursor.rowcount == 1

    def _put_item(self, table: str, record) -> bool:
        with self._lock:
            return self._insert(table, record)

    def _put_newest(self, table: str, record, after: Optional[str]):
        columns, kind = ITEMS[table]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock: other processes on the file wait
            try:
                newest = self._db.execute(f"SELECT id, stored_at FROM {table} WHERE name = ? "
                                          "ORDER BY stored_at DESC, rowid DESC LIMIT 1", (record.name,)).fetchone()
                record = after_newest(record, newest and (newest[0], _utc(newest[1])), after)
                created = self._insert(table, record)
                if not created:
                    row = self._db.execute(f"SELECT {columns}, content FROM {table} WHERE id = ?",
                                           (row_of(record)[0],)).fetchone()
                    record = self._item(kind, row)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return created, record

    def _get_item(self, table: str, item_id: str):
        columns, kind = ITEMS[table]
        with self._lock:
            row = self._db.execute(f"SELECT {columns}, content FROM {table} WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else self._item(kind, row)

    def _latest_item(self, table: str, name: str):
        columns, kind = ITEMS[table]
        with self._lock:
            row = self._db.execute(f"SELECT {columns}, content FROM {table} WHERE name = ? "
                                   "ORDER BY stored_at DESC, rowid DESC LIMIT 1", (name,)).fetchone()
        return None if row is None else self._item(kind, row)

    def _list_items(self, table: str, name: str, limit: int):
        columns, kind = ITEMS[table]
        query, args = f"SELECT {columns} FROM {table}", ()
        if name:
            query, args = query + " WHERE name = ?", (name,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY stored_at DESC, rowid DESC LIMIT ?",
                                    args + (int(limit),)).fetchall()
        return [self._item(kind, r) for r in rows]

    def _delete_item(self, table: str, item_id: str) -> bool:
        with self._lock:
            return self._db.execute(f"DELETE FROM {table} WHERE id = ?", (item_id,)).rowcount == 1

    @staticmethod
    def _item(kind, row):
        return record_of(kind, row, _utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
