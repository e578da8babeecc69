"""The PostgreSQL store's own behaviour on a real server (a throwaway cluster): migrations
applied once when replicas open it together, a newer schema refused, passwords kept out of
what is shown; and two pricegrid servers sharing one database serve each other's snapshots
and portfolios."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest

from pricegrid.server.store.postgres import MIGRATIONS, PostgresStore, redacted
from tests.postgres import fresh_database
from tests.server.store.test_sqlite import make, record


def test_replicas_opening_together_apply_each_migration_once(postgres_cluster):
    url = fresh_database(postgres_cluster)
    stores, errors = [], []

    def open_one():
        try:
            stores.append(PostgresStore(url, max_size=1))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(stores) == 4
    assert {s.schema_version for s in stores} == {len(MIGRATIONS)}
    stores[0].put(record(make()))
    assert len(stores[3].list()) == 1  # one database: each sees the others' writes
    for s in stores:
        s.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pricegrid_schema").fetchone()[0] == 1


def test_a_newer_schema_is_refused(postgres_cluster):
    url = fresh_database(postgres_cluster)
    PostgresStore(url, max_size=1).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE pricegrid_schema SET version = %s", (len(MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        PostgresStore(url, max_size=1)


def test_a_url_is_shown_without_its_password():
    assert redacted("postgresql://app:s3cret@db.internal:5432/risk") == "postgresql://app:***@db.internal:5432/risk"
    assert redacted("postgresql://app@127.0.0.1/risk") == "postgresql://app@127.0.0.1/risk"


def test_two_servers_on_one_database_serve_each_others_data(postgres_cluster):
    from pricegrid.clients import MarketClient, RiskClient, Shift
    from tests.conftest import start_server

    url = fresh_database(postgres_cluster)
    one, two = start_server(store=url), start_server(store=url)
    try:
        with MarketClient(target=one.address, timeout=10) as m1, MarketClient(target=two.address, timeout=10) as m2:
            demo = m1.list_snapshots("demo")
            assert len(demo) == 1 and [x.id for x in m2.list_snapshots("demo")] == [demo[0].id]  # stored once
            sid = demo[0].id
        with RiskClient(target=one.address, timeout=30) as r1, RiskClient(target=two.address, timeout=30) as r2:
            book = r1.book("european", model="bsm", underlying_id="SPX", option_type=["call", "put"],
                           strike=[6000.0, 5800.0], time_to_expiry=[0.5, 1.0])
            stored = r1.put_portfolio("tests/shared", [book])
            shifts, sizes, labels = [Shift("spx", "spot", "relative", ["SPX"])], [[-0.1, 0.1]], ["dn", "up"]
            a = r1.scenario_risk(portfolio="tests/shared", snapshot_id=sid, shifts=shifts, sizes=sizes, labels=labels)
            b = r2.scenario_risk(portfolio="tests/shared", snapshot_id=sid, shifts=shifts, sizes=sizes, labels=labels)
            assert b.portfolio_id == stored.id
            np.testing.assert_array_equal(a.portfolio_pnl, b.portfolio_pnl)
            assert r2.delete_portfolio(stored.id) and r1.list_portfolios("tests/shared") == []
    finally:
        one.stop(1.0)
        two.stop(1.0)
