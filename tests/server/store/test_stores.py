"""The stores' shared meaning, on a real SQLite file and on a real PostgreSQL server (a
throwaway cluster, tests/postgres.py): round trips exact, one record per id, listings newest
first, versions by name, a second connection sees what the first wrote."""

import datetime as dt

import numpy as np
import pytest

from pricegrid.server.domain.market import CashDividend, Finding, Severity
from tests.server.store.test_sqlite import T0, make, record


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request, tmp_path):
    """Opens the store of the test (the same file or database each call), closed after it."""
    opened = []
    if request.param == "sqlite":
        from pricegrid.server.store.sqlite import SqliteSnapshotStore

        def make_store():
            opened.append(SqliteSnapshotStore(tmp_path / "store.db"))
            return opened[-1]
    else:
        from pricegrid.server.store.postgres import PostgresStore
        from tests.postgres import fresh_database

        url = fresh_database(request.getfixturevalue("postgres_cluster"))

        def make_store():
            opened.append(PostgresStore(url, max_size=2))
            return opened[-1]
    yield make_store
    for store in opened:
        store.close()


def test_round_trip_is_exact(opener):
    store = opener()
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


def test_the_same_id_twice_is_not_stored_twice(opener):
    store = opener()
    s = make()
    assert store.put(record(s)) and not store.put(record(s))
    assert len(store.list()) == 1


def test_list_latest_delete(opener):
    store = opener()
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


def test_portfolios_round_trip_version_by_name_and_survive_a_reopen(opener):
    from pricegrid.server.domain.portfolios import StoredPortfolio, content_id

    store = opener()
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
    again = opener()
    assert again.get_portfolio(v2.portfolio_id) == v2
    assert again.delete_portfolio(v2.portfolio_id) and not again.delete_portfolio(v2.portfolio_id)
    assert again.latest_portfolio("desk/a") == v1



def test_scenario_sets_are_versioned_by_name(opener):
    from pricegrid.server.domain.portfolios import StoredScenarioSet, content_id

    store = opener()
    a = StoredScenarioSet(content_id("s", b"a"), "s", "", T0, 3, 2, b"a")
    b = StoredScenarioSet(content_id("s", b"b"), "s", "newer", T0 + dt.timedelta(seconds=1), 1, 1, b"b")
    assert store.put_scenario_set(a) and store.put_scenario_set(b) and not store.put_scenario_set(a)
    assert store.latest_scenario_set("s") == b and store.get_scenario_set(a.set_id) == a
    assert [x.set_id for x in store.list_scenario_sets("s")] == [b.set_id, a.set_id]
    assert store.get_portfolio(a.set_id) is None  # the kinds do not mix
    assert store.delete_scenario_set(b.set_id) and store.latest_scenario_set("s") == a
