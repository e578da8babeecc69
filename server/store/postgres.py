"""The shared store: market snapshots, portfolios, named scenario sets and backtest
histories in PostgreSQL, for replicas that serve the same data (psycopg 3 and its
connection pool).

The same protocols and the same meaning as :mod:`pricegrid.server.store.sqlite`: a record
is written once under its content id (a second put of the same id is a no-op that says so),
read back exactly (a snapshot as its canonical JSON, a portfolio, scenario set or backtest
history as its contract bytes), listed newest first. Times are ``timestamptz``; ``seq`` (an identity
column) orders records stored in the same microsecond, as SQLite's rowid does.

A backtest history's new version is written in a transaction holding an advisory lock on
its name (``_items.name_lock_key``), so that replicas appending to one name at once are
serialized: each sees the version the one before it stored.

Schema migrations are numbered and run at open, in one transaction under an advisory lock,
so that replicas starting together apply each exactly once; ``pricegrid_schema`` records
the last one applied, and a database newer than this code refuses to open.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from typing import Optional

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pricegrid.server.domain.errors import unavailable
from pricegrid.server.domain.market import StoredSnapshot
from pricegrid.server.store._items import ITEMS, NamedItems, after_newest, snapshot_record, name_lock_key, record_of, row_of

MIGRATIONS = (
    # 1: market snapshots (as SQLite's migrations 1 and 2)
    """
    CREATE TABLE snapshots (
        seq           BIGINT GENERATED ALWAYS AS IDENTITY,
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        as_of         TIMESTAMPTZ NOT NULL,
        stored_at     TIMESTAMPTZ NOT NULL,
        curves        INTEGER NOT NULL,
        underlyings   INTEGER NOT NULL,
        heston        INTEGER NOT NULL,
        description   TEXT NOT NULL,
        forced_reason TEXT NOT NULL,
        findings      TEXT NOT NULL,
        surfaces      INTEGER NOT NULL DEFAULT 0,
        content       TEXT NOT NULL
    );
    CREATE INDEX snapshots_by_name ON snapshots (name, as_of)
    """,
    # 2: stored portfolios and named scenario sets (SQLite's 3 and 4)
    """
    CREATE TABLE portfolios (
        seq           BIGINT GENERATED ALWAYS AS IDENTITY,
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        description   TEXT NOT NULL,
        stored_at     TIMESTAMPTZ NOT NULL,
        books         BIGINT NOT NULL,
        trades        BIGINT NOT NULL,
        content       BYTEA NOT NULL
    );
    CREATE INDEX portfolios_by_name ON portfolios (name, stored_at);
    CREATE TABLE scenario_sets (
        seq           BIGINT GENERATED ALWAYS AS IDENTITY,
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        description   TEXT NOT NULL,
        stored_at     TIMESTAMPTZ NOT NULL,
        scenarios     BIGINT NOT NULL,
        components    BIGINT NOT NULL,
        content       BYTEA NOT NULL
    );
    CREATE INDEX scenario_sets_by_name ON scenario_sets (name, stored_at)
    """,
    # 3: backtest histories (SQLite's 5)
    """
    CREATE TABLE backtest_histories (
        seq            BIGINT GENERATED ALWAYS AS IDENTITY,
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL,
        description    TEXT NOT NULL,
        stored_at      TIMESTAMPTZ NOT NULL,
        observations   BIGINT NOT NULL,
        exceptions     BIGINT NOT NULL,
        var_convention INTEGER NOT NULL,
        content        BYTEA NOT NULL
    );
    CREATE INDEX backtest_histories_by_name ON backtest_histories (name, stored_at)
    """,
    # 4: the snapshot a stored snapshot's jumps were measured against (SQLite's 6)
    """
    ALTER TABLE snapshots ADD COLUMN compared_with TEXT NOT NULL DEFAULT ''
    """,
)

_SUMMARY = ("id, name, as_of, stored_at, curves, underlyings, heston, description, forced_reason, findings, surfaces,"
            " compared_with")
#: pg_advisory_xact_lock's key for migrations (any fixed number: "pricegrd" in ASCII)
_MIGRATION_LOCK = 0x7072696365677264


def redacted(url: str) -> str:
    """A connection string without its password (for logs): libpq's URI form (the userinfo's
    password, a ``password=`` query parameter; several hosts, ``host1:p1,host2:p2``, as libpq
    takes them) and its ``key=value`` form. Text only: nothing is parsed that could raise."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _KV_PASSWORD.sub(r"\1***", url)
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = userinfo.partition(":")[0] + ":***@" + hosts
    return f"{scheme}://{netloc}" + _QUERY_PASSWORD.sub(r"\1***", tail)


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc)


class _Pool(ConnectionPool):
    """The pool, whose connections turn an unreachable or restarting server (libpq's
    OperationalError: refused, AdminShutdown, ...; no connection within the pool's timeout)
    into the domain's UNAVAILABLE, so a call says "retry" rather than INTERNAL (the cause
    rides along as ``__cause__``: the transport logs it)."""

    @contextlib.contextmanager
    def connection(self, timeout: Optional[float] = None):
        try:
            with super().connection(timeout) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise unavailable("the store") from exc


class PostgresStore(NamedItems):
    """SnapshotStore, PortfolioStore and ScenarioSetStore in one PostgreSQL database
    (``url``: a libpq connection URL); a pool of at most ``max_size`` connections."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, timeout: float = 10.0):
        self.url = url
        # one connection first, so that an unreachable server or a refused login fails now with
        # libpq's own reason (the pool would retry quietly until its timeout)
        psycopg.connect(url, connect_timeout=max(1, int(timeout)), application_name="pricegrid").close()
        self._pool = _Pool(url, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
                           kwargs={"autocommit": True, "application_name": "pricegrid"})
        self._pool.open(wait=True, timeout=timeout)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS pricegrid_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM pricegrid_schema").fetchone()
            version = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO pricegrid_schema (version) VALUES (0)")
            if version > len(MIGRATIONS):
                raise RuntimeError(f"{redacted(self.url)}: schema version {version} is newer than this pricegrid knows")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute("UPDATE pricegrid_schema SET version = %s", (number,))

    @property
    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            return conn.execute("SELECT version FROM pricegrid_schema").fetchone()[0]

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ snapshots
    def put(self, record: StoredSnapshot) -> bool:
        snap = record.snapshot
        row = (record.snapshot_id, record.name, _utc(record.as_of), _utc(record.stored_at), *record.counts[:3],
               record.description, record.forced_reason,
               json.dumps([[int(f.severity), f.check, f.field, f.message] for f in record.findings]), record.counts[3],
               record.compared_with, snap.canonical_json())
        with self._pool.connection() as conn:
            cur = conn.execute(f"INSERT INTO snapshots ({_SUMMARY}, content) VALUES "
                               f"({', '.join(['%s'] * len(row))}) ON CONFLICT (id) DO NOTHING", row)
            return cur.rowcount == 1

    def get(self, snapshot_id: str) -> Optional[StoredSnapshot]:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {_SUMMARY}, content FROM snapshots WHERE id = %s", (snapshot_id,)).fetchone()
        return None if row is None else self._record(row, with_content=True)

    def list(self, name: str = "", limit: int = 100):
        query, args = f"SELECT {_SUMMARY} FROM snapshots", ()
        if name:
            query, args = query + " WHERE name = %s", (name,)
        with self._pool.connection() as conn:
            rows = conn.execute(query + " ORDER BY as_of DESC, stored_at DESC, seq DESC LIMIT %s",
                                args + (int(limit),)).fetchall()
        return [self._record(r, with_content=False) for r in rows]

    def latest(self, name: str, before: dt.datetime, exclude: str = "") -> Optional[StoredSnapshot]:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {_SUMMARY}, content FROM snapshots WHERE name = %s AND as_of <= %s AND id <> %s"
                               " ORDER BY as_of DESC, stored_at DESC, seq DESC LIMIT 1",
                               (name, _utc(before), exclude)).fetchone()
        return None if row is None else self._record(row, with_content=True)

    def delete(self, snapshot_id: str) -> bool:
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM snapshots WHERE id = %s", (snapshot_id,)).rowcount == 1

    def exists(self, snapshot_id: str, timeout: Optional[float] = None) -> bool:
        with self._pool.connection(timeout) as conn:
            return conn.execute("SELECT 1 FROM snapshots WHERE id = %s", (snapshot_id,)).fetchone() is not None

    @staticmethod
    def _record(row, *, with_content: bool) -> StoredSnapshot:
        return snapshot_record(row, _utc, with_content=with_content)

    # ------------------------------------------------------------------ named items
    @staticmethod
    def _insert(conn, table: str, record) -> bool:
        row = row_of(record)
        row[3] = _utc(row[3])
        cur = conn.execute(f"INSERT INTO {table} ({ITEMS[table][0]}, content) VALUES "
                           f"({', '.join(['%s'] * len(row))}) ON CONFLICT (id) DO NOTHING", row)
        return cur.rowcount == 1

    def _put_item(self, table: str, record) -> bool:
        with self._pool.connection() as conn:
            return self._insert(conn, table, record)

    def _put_newest(self, table: str, record, after: Optional[str]):
        columns, kind = ITEMS[table]
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (name_lock_key(table, record.name),))
            newest = conn.execute(f"SELECT id, stored_at FROM {table} WHERE name = %s "
                                  "ORDER BY stored_at DESC, seq DESC LIMIT 1", (record.name,)).fetchone()
            record = after_newest(record, newest and (newest[0], _utc(newest[1])), after)
            created = self._insert(conn, table, record)
            if not created:
                row = conn.execute(f"SELECT {columns}, content FROM {table} WHERE id = %s",
                                   (row_of(record)[0],)).fetchone()
                record = self._item(kind, row)
        return created, record

    def _get_item(self, table: str, item_id: str):
        columns, kind = ITEMS[table]
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {columns}, content FROM {table} WHERE id = %s", (item_id,)).fetchone()
        return None if row is None else self._item(kind, row)

    def _latest_item(self, table: str, name: str):
        columns, kind = ITEMS[table]
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {columns}, content FROM {table} WHERE name = %s "
                               "ORDER BY stored_at DESC, seq DESC LIMIT 1", (name,)).fetchone()
        return None if row is None else self._item(kind, row)

    def _list_items(self, table: str, name: str, limit: int):
        columns, kind = ITEMS[table]
        query, args = f"SELECT {columns} FROM {table}", ()
        if name:
            query, args = query + " WHERE name = %s", (name,)
        with self._pool.connection() as conn:
            rows = conn.execute(query + " ORDER BY stored_at DESC, seq DESC LIMIT %s", args + (int(limit),)).fetchall()
        return [self._item(kind, r) for r in rows]

    def _delete_item(self, table: str, item_id: str) -> bool:
        with self._pool.connection() as conn:
            return conn.execute(f"DELETE FROM {table} WHERE id = %s", (item_id,)).rowcount == 1

    @staticmethod
    def _item(kind, row):
        return record_of(kind, row, _utc)
