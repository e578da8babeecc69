"""Shared fixtures: a real pricegrid server on 127.0.0.1 with an ephemeral port.

Tests run against the installed package (``pip install '.[test]'``); nothing here is mocked.
"""

from __future__ import annotations

import grpc
import pytest

from pricegrid.server.app import logs
from pricegrid.server.app.server import start
from pricegrid.server.app.settings import Settings
from pricegrid.v1 import pricing_pb2_grpc

logs.configure("warning", "json")


def start_server(*, span_exporter=None, **overrides):
    """A server on an ephemeral port with ``overrides`` of its settings; ``span_exporter``
    (an OpenTelemetry SpanExporter) turns tracing on."""
    settings = Settings(**{"host": "127.0.0.1", "port": 0, "metrics_port": 0, "grace_s": 2.0, "store": ":memory:",
                           **overrides})
    return start(settings, span_exporter=span_exporter)


@pytest.fixture(scope="session")
def server():
    running = start_server(echo=True)  # the bench tests measure against its EchoService
    yield running
    running.stop(1.0)


@pytest.fixture(scope="session")
def channel(server):
    ch = grpc.insecure_channel(
        server.address,
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stub(channel):
    return pricing_pb2_grpc.PricingServiceStub(channel)


@pytest.fixture(scope="session")
def postgres_cluster():
    """The URL of a throwaway PostgreSQL cluster for the session (tests/postgres.py)."""
    from tests import postgres

    why = postgres.available()
    if why is not None:
        pytest.skip(why)
    with postgres.cluster() as url:
        yield url
