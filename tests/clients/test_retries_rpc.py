"""RetryConfig on every service the clients call, against a stand-in server that answers
UNAVAILABLE to the first attempt of each method (our real server cannot be made to on cue):
PricingService's methods and the reads and computations of MarketDataService and
RiskService are retried; their puts and deletes are not (a second attempt could differ)."""

import asyncio
import collections
import threading
from concurrent import futures

import grpc
import pytest

from pricegrid.clients import AsyncRiskClient, MarketClient, PricingError, RetryConfig, RiskClient
from pricegrid.clients import _config
from pricegrid.v1 import market_pb2, pricing_pb2, risk_pb2

_SERVICES = {"pricegrid.v1.PricingService": pricing_pb2, "pricegrid.v1.MarketDataService": market_pb2,
             "pricegrid.v1.RiskService": risk_pb2}
RETRIES = RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


def _methods():
    for service, module in _SERVICES.items():
        for m in module.DESCRIPTOR.services_by_name[service.split(".")[-1]].methods:
            yield service, m


class FlakyEverywhere:
    """Every method of the three services: UNAVAILABLE on its first attempt, then an empty
    response (one message for a stream)."""

    def __init__(self):
        self.attempts = collections.Counter()
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = collections.defaultdict(dict)
        for service, m in _methods():
            handlers[service][m.name] = self._handler(service, m)
        for service, methods in handlers.items():
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _handler(self, service, m):
        name = f"{service}/{m.name}"

        def first_fails(context):
            with self._lock:
                self.attempts[name] += 1
                first = self.attempts[name] == 1
            if first:
                context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

        def unary(request, context):
            first_fails(context)
            return b""

        def streaming(request, context):
            first_fails(context)
            yield b""

        kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
                 (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
        make = kinds[(m.client_streaming, m.server_streaming)]
        return make(streaming if m.server_streaming else unary, request_deserializer=None, response_serializer=None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stop(0).wait()


def test_the_retried_methods_are_the_contracts():
    known = {(s, m.name) for s, m in _methods()}
    assert {(s, m) for s, ms in _config.RETRIED_METHODS.items() for m in ms} <= known


def test_each_method_is_retried_exactly_when_safe():
    """One raw call per method on a channel with the clients' options: two attempts where
    RetryConfig applies, one (and UNAVAILABLE) where it does not."""
    with FlakyEverywhere() as flaky, grpc.insecure_channel(flaky.address, options=_config.channel_options(RETRIES)) as ch:
        for service, m in _methods():
            path = f"/{service}/{m.name}"
            shape = {(False, False): ch.unary_unary, (False, True): ch.unary_stream,
                     (True, False): ch.stream_unary, (True, True): ch.stream_stream}
            call = shape[(m.client_streaming, m.server_streaming)](path)
            request = iter([b""]) if m.client_streaming else b""
            retried = service in _config.SERVICES or m.name in _config.RETRIED_METHODS.get(service, ())
            try:
                reply = call(request, timeout=5)
                if m.server_streaming:
                    reply = list(reply)
                failed = None
            except grpc.RpcError as e:
                failed = e.code()
            assert flaky.attempts[f"{service}/{m.name}"] == (2 if retried else 1), path
            assert failed == (None if retried else grpc.StatusCode.UNAVAILABLE), path
            if not retried:
                assert m.name.startswith(("Put", "Delete")), path  # only writes are left out


def test_market_and_risk_clients_retry_their_own_services():
    with FlakyEverywhere() as flaky:
        with MarketClient(target=flaky.address, timeout=5.0, retries=RETRIES) as market:
            assert market.list_snapshots() == []
            with pytest.raises(PricingError) as e:
                market.delete_snapshot("0" * 32)
            assert e.value.code == grpc.StatusCode.UNAVAILABLE
        with RiskClient(target=flaky.address, timeout=5.0, retries=RETRIES) as risk:
            assert risk.list_portfolios() == []

        assert flaky.attempts["pricegrid.v1.MarketDataService/ListSnapshots"] == 2
        assert flaky.attempts["pricegrid.v1.MarketDataService/DeleteSnapshot"] == 1
        assert flaky.attempts["pricegrid.v1.RiskService/ListPortfolios"] == 2
    with FlakyEverywhere() as flaky:

        async def run():
            async with AsyncRiskClient(target=flaky.address, timeout=5.0, retries=RETRIES) as client:
                return await client.list_portfolios()

        assert asyncio.run(run()) == []
        assert flaky.attempts["pricegrid.v1.RiskService/ListPortfolios"] == 2
    with FlakyEverywhere() as flaky:  # retries off: one attempt
        with MarketClient(target=flaky.address, timeout=5.0, retries=RetryConfig(max_attempts=1)) as market:
            with pytest.raises(PricingError) as e:
                market.list_snapshots()
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        assert flaky.attempts["pricegrid.v1.MarketDataService/ListSnapshots"] == 1
