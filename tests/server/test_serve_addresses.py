"""Where a real server listens: the gRPC port on an IPv6 loopback address (bare or in
brackets), the plaintext metrics endpoint on loopback unless ``metrics_host`` exposes it,
scraped where it says."""

from __future__ import annotations

import urllib.request

import pytest

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market
from tests.conftest import start_server


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_loopback_host_serves_and_its_metrics_stay_on_ipv4_loopback(host):
    running = start_server(host=host)
    try:
        assert running.address == f"[::1]:{running.port}"
        with FrontOfficeClient(target=running.address, timeout=5) as fo:
            assert fo.price(EuropeanOption("call", strike=100.0, expiry=0.5),
                            Market(spot=100.0, rate=0.03, volatility=0.2)).price > 0
        assert running._metrics_http.server_address[0] == "127.0.0.1"
    finally:
        running.stop(1.0)


def test_metrics_listen_on_loopback_by_default_and_where_metrics_host_says():
    running = start_server()  # the gRPC host is 127.0.0.1 here too: the default is metrics_host's own
    try:
        assert running.settings.metrics_host == "127.0.0.1"
        assert running._metrics_http.server_address[0] == "127.0.0.1"
    finally:
        running.stop(1.0)
    # (0.0.0.0: exposed on purpose, as the Dockerfile does)
    for host, bound, reach in (("[::1]", "::1", "[::1]"), ("0.0.0.0", "0.0.0.0", "127.0.0.1")):
        running = start_server(metrics_host=host)
        try:
            assert running._metrics_http.server_address[0] == bound
            url = f"http://{reach}:{running.metrics_port}/metrics"
            assert "pricegrid_build_info" in urllib.request.urlopen(url, timeout=5).read().decode()
        finally:
            running.stop(1.0)
