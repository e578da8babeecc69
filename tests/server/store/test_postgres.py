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
    # every form libpq takes a password in: the query string, several hosts, key=value
    assert redacted("postgresql://app@db/risk?sslmode=require&password=s3cret&x=1") == \
        "postgresql://app@db/risk?sslmode=require&password=***&x=1"
    assert redacted("postgres://app@db/risk?PassWord=s3cret") == "postgres://app@db/risk?PassWord=***"
    assert redacted("postgresql://app:s3cret@h1:5432,h2:5433/risk?target_session_attrs=read-write") == \
        "postgresql://app:***@h1:5432,h2:5433/risk?target_session_attrs=read-write"
    assert redacted("postgresql://app:p%40ss@[::1]:5432/risk") == "postgresql://app:***@[::1]:5432/risk"
    assert redacted("host=db password=s3cret user=app") == "host=db password=*** user=app"
    assert redacted("host=db password = 'a \\' b' user=app") == "host=db password = *** user=app"


@pytest.mark.parametrize("form", ["userinfo", "query", "several_hosts"])
def test_a_server_on_postgres_logs_no_password_and_takes_several_hosts(postgres_cluster, form):
    """The started line (its store and settings) carries no password, whatever the URL's
    form; libpq's several-host form starts (the cluster trusts local logins, so the password
    is given and ignored)."""
    import structlog

    from pricegrid.clients import MarketClient
    from tests.conftest import start_server

    url = fresh_database(postgres_cluster)
    base, name = url.rsplit("/", 1)
    hostport = base.split("@", 1)[1]
    url = {"userinfo": f"postgresql://pricegrid:S3CRET@{hostport}/{name}",
           "query": f"postgresql://pricegrid@{hostport}/{name}?password=S3CRET",
           "several_hosts": f"postgresql://pricegrid:S3CRET@{hostport},{hostport}/{name}"}[form]
    from pricegrid.server.app import logs as app_logs

    app_logs.configure("info", "json")  # the started line is info (the tests log warnings)
    try:
        with structlog.testing.capture_logs() as logs:
            running = start_server(store=url)
    finally:
        app_logs.configure("warning", "json")
    try:
        started = [e for e in logs if e.get("event") == "started"]
        assert len(started) == 1
        assert "S3CRET" not in repr(logs) and "***" in started[0]["store"]
        assert started[0]["settings"]["store"] == started[0]["store"]
        with MarketClient(target=running.address, timeout=10) as market:
            assert [s.name for s in market.list_snapshots("demo")] == ["demo"]
    finally:
        running.stop(1.0)


def test_while_the_database_refuses_connections_store_calls_are_unavailable_and_health_serves(postgres_cluster):
    """PostgreSQL unreachable (its connections ended, new ones refused): a store call is
    UNAVAILABLE, naming nothing internal; pricing and health go on; once it is back, the
    same call succeeds."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market
    from pricegrid.v1 import market_pb2, market_pb2_grpc
    from tests.conftest import start_server

    url = fresh_database(postgres_cluster)
    name = url.rsplit("/", 1)[1]
    running = start_server(store=url)
    channel = grpc.insecure_channel(running.address, options=[("grpc.enable_retries", 0)])
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    try:
        assert stub.ListSnapshots(market_pb2.ListSnapshotsRequest(), timeout=30).snapshots
        with psycopg.connect(postgres_cluster, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            try:
                import structlog

                with structlog.testing.capture_logs() as logs, pytest.raises(grpc.RpcError) as e:
                    stub.ListSnapshots(market_pb2.ListSnapshotsRequest(), timeout=30)
                assert e.value.code() == grpc.StatusCode.UNAVAILABLE
                assert e.value.details() == "the store is unavailable; retry later"
                causes = [x["cause"] for x in logs if x.get("event") == "rpc_unavailable"]  # the log has the cause
                assert len(causes) == 1 and ("OperationalError" in causes[0] or "AdminShutdown" in causes[0]
                                             or "PoolTimeout" in causes[0]), causes
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", "pricegrid.v1.PricingService", "pricegrid.v1.MarketDataService"):
                    reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                with FrontOfficeClient(target=running.address, timeout=5) as fo:
                    assert fo.price(EuropeanOption("call", strike=100.0, expiry=0.5),
                                    Market(spot=100.0, rate=0.03, volatility=0.2)).price > 0
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert stub.ListSnapshots(market_pb2.ListSnapshotsRequest(), timeout=30).snapshots
    finally:
        channel.close()
        running.stop(1.0)


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
