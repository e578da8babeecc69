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
    assert store.latest("eod", T0 - dt.timedelta(microseconds=1)) is None
    assert store.latest("eod", T0).as_of == T0  # at or before
    assert store.delete(snaps[0].content_id()) and not store.delete(snaps[0].content_id())
    assert len(store.list("eod")) == 2


def test_latest_at_the_same_as_of_is_the_newest_other_one_and_compared_with_is_kept(opener):
    """A second snapshot of one as-of is measured against the first (not itself), and the
    record keeps the id its jumps were measured against."""
    import dataclasses

    store = opener()
    first, second = make(spot=100.0), make(spot=300.0)
    assert store.put(record(first))
    assert store.latest("eod", T0, exclude=second.content_id()).snapshot_id == first.content_id()
    assert store.latest("eod", T0, exclude=first.content_id()) is None
    later = dataclasses.replace(record(second), stored_at=T0 + dt.timedelta(seconds=1),
                                compared_with=first.content_id())
    assert store.put(later)
    assert store.latest("eod", T0).snapshot_id == second.content_id()  # same as-of: stored later is newer
    assert store.latest("eod", T0, exclude=second.content_id()).snapshot_id == first.content_id()
    reopened = opener()
    assert reopened.get(second.content_id()).compared_with == first.content_id()
    assert reopened.get(first.content_id()).compared_with == ""
    assert [r.compared_with for r in reopened.list("eod")] == [first.content_id(), ""]


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


def _history(name, content, seconds=0, observations=3):
    from pricegrid.server.domain.portfolios import StoredBacktestHistory, content_id

    return StoredBacktestHistory(content_id(name, content), name, "", T0 + dt.timedelta(seconds=seconds),
                                 observations, 1, 2, content)


def test_backtest_histories_are_versioned_by_name_in_the_order_they_were_put(opener):
    from pricegrid.server.domain.portfolios import NotNewest

    store = opener()
    a = _history("desk/h", b"\x00a")
    created, got = store.put_backtest_history(a)
    assert created and got == a and store.get_backtest_history(a.history_id) == a  # every column back, bytes exact
    assert got.var_convention == 2 and got.observations == 3
    # a version put with an earlier clock is still stored after the newest: a microsecond later
    b = _history("desk/h", b"b", seconds=-60, observations=4)
    created, got = store.put_backtest_history(b, after=a.history_id)
    assert created and got.stored_at == a.stored_at + dt.timedelta(microseconds=1)
    assert store.latest_backtest_history("desk/h") == got and store.get_backtest_history(b.history_id) == got
    assert [x.history_id for x in store.list_backtest_histories("desk/h")] == [b.history_id, a.history_id]
    assert all(x.content is None for x in store.list_backtest_histories())
    # after a version that is no longer the newest: refused, naming the newest
    with pytest.raises(NotNewest) as e:
        store.put_backtest_history(_history("desk/h", b"c", seconds=5), after=a.history_id)
    assert (e.value.expected, e.value.newest) == (a.history_id, b.history_id)
    with pytest.raises(NotNewest) as e:
        store.put_backtest_history(_history("desk/none", b"c"), after=a.history_id)
    assert e.value.newest == ""
    assert store.latest_backtest_history("desk/none") is None and len(store.list_backtest_histories()) == 2
    # the same id again: not stored twice, the stored record back
    created, got = store.put_backtest_history(_history("desk/h", b"\x00a", seconds=99))
    assert not created and got == a
    assert store.get_scenario_set(a.history_id) is None and store.get_portfolio(b.history_id) is None  # kinds apart
    assert store.delete_backtest_history(b.history_id) and not store.delete_backtest_history(b.history_id)
    assert store.latest_backtest_history("desk/h") == a
    store.close()
    assert opener().latest_backtest_history("desk/h") == a  # a reopen (a second connection) sees it


def test_appends_racing_on_one_name_land_one_at_a_time(opener):
    """Eight threads, each on its own store (its own connection), append after the same
    version: exactly one lands; the others are told which version is newest now."""
    import threading

    from pricegrid.server.domain.portfolios import NotNewest

    first = opener()
    base = _history("desk/race", b"base")
    first.put_backtest_history(base)
    stores = [opener() for _ in range(8)]
    outcomes, barrier = [None] * 8, threading.Barrier(8)

    def append(i):
        barrier.wait()
        try:
            outcomes[i] = stores[i].put_backtest_history(
                _history("desk/race", f"v{i}".encode(), seconds=1), after=base.history_id)[0]
        except NotNewest as e:
            outcomes[i] = e.newest

    threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [i for i, o in enumerate(outcomes) if o is True]
    assert len(winners) == 1, outcomes
    newest = first.latest_backtest_history("desk/race")
    assert newest.content == f"v{winners[0]}".encode()
    assert all(o == newest.history_id for i, o in enumerate(outcomes) if i != winners[0])
    assert len(first.list_backtest_histories("desk/race")) == 2
