"""The embedded snapshot store on a real SQLite file: round trips, ordering, idempotence,
migrations recorded, a second connection sees what the first wrote."""

import datetime as dt

import numpy as np
import pytest

from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.domain.market import (
    CashDividend, Finding, HestonSet, Severity, Snapshot, StoredSnapshot, Underlying,
)
from pricegrid.server.store.sqlite import MIGRATIONS, SqliteSnapshotStore

T0 = dt.datetime(2026, 12, 1, 17, 30, tzinfo=dt.timezone.utc)


def make(name="eod", hours=0, spot=100.0) -> Snapshot:
    curve = YieldCurve("USD-OIS", "USD", "ACT_365F", np.array([1 / 3, 0.5, 1.0]),
                       np.array([0.991, 0.99, 0.97]), ValueKind.DISCOUNT_FACTOR, Interpolation.MONOTONE_CONVEX)
    return Snapshot(name, T0 + dt.timedelta(hours=hours), T0.date(), (curve,),
                    (Underlying("SPX", "USD", spot=spot, discount_curve="USD-OIS",
                                dividends=(CashDividend(0.25, 1.5),)),),
                    (HestonSet("H", "SPX", 0.04, 1.2, 0.05, 0.5, -0.6),), "test")


def record(s: Snapshot, findings=()) -> StoredSnapshot:
    assert s.validate() == []
    return StoredSnapshot(s.content_id(), s.name, s.as_of, T0, (1, 1, 1, 0), s.description, "", tuple(findings), s)


def test_migrations_are_recorded_and_a_second_connection_sees_the_data(tmp_path):
    path = tmp_path / "nested" / "b.db"
    first = SqliteSnapshotStore(path)
    assert first.schema_version == len(MIGRATIONS)
    first.put(record(make()))
    second = SqliteSnapshotStore(path)  # migrations are not run twice
    assert second.schema_version == len(MIGRATIONS) and len(second.list()) == 1
    first.close()
    second.close()


def test_a_store_of_the_first_schema_is_migrated_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a file written by the first schema, with one row
        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        s = make()
        db.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, 1, 1, 1, '', '', '[]', ?)",
                   (s.content_id(), s.name, s.as_of.isoformat(timespec="microseconds"),
                    T0.isoformat(timespec="microseconds"), s.canonical_json()))
    store = SqliteSnapshotStore(path)
    assert store.schema_version == len(MIGRATIONS)
    got = store.get(s.content_id())
    assert got.counts == (1, 1, 1, 0) and got.snapshot.content_id() == s.content_id()


def test_a_newer_schema_is_refused(tmp_path):
    import sqlite3

    path = tmp_path / "c.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        SqliteSnapshotStore(path)
