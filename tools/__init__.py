"""Tools that run beside a server, built on the client library: ``pricegrid bench``.

Not part of the client library a front-office or risk system imports: a tool may use
:mod:`pricegrid.clients` and the contract, never the server or the kernels, and no client
imports a tool (the layer contracts in pyproject.toml hold both).

- :mod:`pricegrid.tools.bench`: ``pricegrid bench latency``, a running server's latency
  against the floor of gRPC (a bare grpcio echo server started beside it).
- :mod:`pricegrid.tools._bare_echo`: that bare echo server, also used by ``bench/``.
"""
