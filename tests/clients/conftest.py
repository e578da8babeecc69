"""Fixtures of the client RPC tests: a RiskClient and the demo snapshot's id on the session's
server (tests/conftest.py), one per module."""

import pytest

from pricegrid.clients import MarketClient, RiskClient


@pytest.fixture(scope="module")
def risk(server):
    with RiskClient(target=server.address, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def snapshot_id(server):
    with MarketClient(target=server.address, timeout=10) as market:
        return market.list_snapshots("demo")[0].id
