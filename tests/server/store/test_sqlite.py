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


def test_round_trip_is_exact(tmp_path):
    store = SqliteSnapshotStore(tmp_path / "a.db")
    s = make()
    finding = Finding(Severity.WARNING, "staleness", "as_of", "old")
    assert store.put(record(s, [finding])) is True
    got = store.get(s.content_id())
    assert got.snapshot.canonical_json() == s.canonical_json()  # every float bit for bit
    assert got.snapshot.content_id() == s.content_id()
    assert got.findings == (finding,) and got.as_of == s.as_of and got.stored_at == T0
    np.testing.assert_array_equal(got.snapshot.curves[0].node_times, s.curves[0].node_times)
    assert got.snapshot.underlying("SPX").dividends == (CashDividend(0.25, 1.5),)
    assert store.get("f" * 32) is None


def test_the_same_id_twice_is_not_stored_twice(tmp_path):
    store = SqliteSnapshotStore(tmp_path / "a.db")
    s = make()
    assert store.put(record(s)) and not store.put(record(s))
    assert len(store.list()) == 1


def test_list_latest_delete(tmp_path):
    store = SqliteSnapshotStore(tmp_path / "a.db")
    snaps = [make(hours=h, spot=100 + h) for h in (0, 2, 1)] + [make("other", hours=5)]
    for s in snaps:
        store.put(record(s))
    assert [r.as_of for r in store.list("eod")] == [T0 + dt.timedelta(hours=h) for h in (2, 1, 0)]
    assert all(r.snapshot is None for r in store.list())  # summaries only
    assert len(store.list(limit=2)) == 2 and len(store.list()) == 4
    assert store.latest("eod", T0 + dt.timedelta(hours=1, minutes=30)).snapshot.underlying("SPX").spot == 101
    assert store.latest("eod", T0) is None
    assert store.delete(snaps[0].content_id()) and not store.delete(snaps[0].content_id())
    assert len(store.list("eod")) == 2


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


def test_portfolios_round_trip_version_by_name_and_survive_a_reopen(tmp_path):
    from pricegrid.server.domain.portfolios import StoredPortfolio, content_id

    store = SqliteSnapshotStore(tmp_path / "p.db")
    content = bytes(range(256)) * 3  # any bytes, NULs included, back exactly
    v1 = StoredPortfolio(content_id("desk/a", content), "desk/a", "first", T0, 2, 30, content)
    v2 = StoredPortfolio(content_id("desk/a", content[:10]), "desk/a", "", T0 + dt.timedelta(hours=1), 1, 3,
                         content[:10])
    other = StoredPortfolio(content_id("desk/b", content), "desk/b", "", T0, 2, 30, content)
    assert v1.portfolio_id != other.portfolio_id  # the name is part of the id
    assert store.put_portfolio(v1) and store.put_portfolio(v2) and store.put_portfolio(other)
    assert not store.put_portfolio(v1)  # the same version again: stored once
    assert store.get_portfolio(v1.portfolio_id) == v1
    assert store.latest_portfolio("desk/a") == v2 and store.latest_portfolio("desk/c") is None
    assert [p.portfolio_id for p in store.list_portfolios("desk/a")] == [v2.portfolio_id, v1.portfolio_id]
    assert all(p.content is None for p in store.list_portfolios())
    assert len(store.list_portfolios(limit=2)) == 2
    store.close()
    again = SqliteSnapshotStore(tmp_path / "p.db")
    assert again.get_portfolio(v2.portfolio_id) == v2
    assert again.delete_portfolio(v2.portfolio_id) and not again.delete_portfolio(v2.portfolio_id)
    assert again.latest_portfolio("desk/a") == v1
