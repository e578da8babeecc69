"""The server's subcommands of the ``pricegrid`` console command (dispatched by
:mod:`pricegrid.console`): ``serve`` runs the server, ``health`` asks a server's gRPC health
service (the Dockerfile's HEALTHCHECK)."""

from __future__ import annotations

import argparse
import sys

from pricegrid.server.app.settings import Settings


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pricegrid serve",
        description="Start the pricegrid gRPC server. Flags override PRICEGRID_* environment variables.",
    )
    p.add_argument("--host", help="address to listen on (0.0.0.0: every interface; plaintext beyond loopback needs TLS or --allow-plaintext)")
    p.add_argument("--port", type=int, help="gRPC port (0: an ephemeral one, printed at start)")
    p.add_argument("--kernel-threads", type=int, dest="kernel_threads", help="threads of the pricing kernels")
    cap = p.add_argument_group("capacity classes (beyond them: RESOURCE_EXHAUSTED with a retry pushback)")
    cap.add_argument("--front-workers", type=int, dest="front_workers",
                     help="front-office calls computed at once off the event loop")
    cap.add_argument("--batch-workers", type=int, dest="batch_workers", help="batch calls computed at once")
    cap.add_argument("--market-workers", type=int, dest="market_workers", help="market-data calls at once")
    cap.add_argument("--queue", type=int, help="calls of a class that may wait for a slot")
    cap.add_argument("--queue-wait-ms", type=float, dest="queue_wait_ms",
                     help="longest wait of a front-office call for a slot")
    cap.add_argument("--max-streams", type=int, dest="max_streams", help="streams open at once on the server")
    cap.add_argument("--max-connection-streams", type=int, dest="max_connection_streams",
                     help="streams open at once on one connection (unary calls beside them are not counted)")
    p.add_argument("--max-message-bytes", type=int, dest="max_message_bytes",
                   help="largest batch or market-data message (decompressed)")
    p.add_argument("--max-trade-message-bytes", type=int, dest="max_trade_message_bytes",
                   help="largest per-trade request (Price, ImpliedVolatility, ServerInfo)")
    p.add_argument("--max-stream-message-bytes", type=int, dest="max_stream_message_bytes",
                   help="largest PriceStream message")
    p.add_argument("--max-rows", type=int, dest="max_rows", help="rows one batch request may carry")
    p.add_argument("--chunk-rows", type=int, dest="chunk_rows", help="rows the server computes at a time")
    p.add_argument("--default-deadline", type=float, dest="default_deadline_s", help="seconds a call without a deadline gets")
    p.add_argument("--max-cost-unary", type=float, dest="max_cost_unary_s",
                   help="estimated core-seconds one trade may ask (more: RESOURCE_EXHAUSTED)")
    p.add_argument("--max-cost-batch", type=float, dest="max_cost_batch_s",
                   help="estimated core-seconds one batch request may ask")
    p.add_argument("--grace", type=float, dest="grace_s", help="seconds open calls get to finish on SIGTERM")
    p.add_argument("--max-stream-trades", type=int, dest="max_stream_trades", help="trades one PriceStream may hold")
    p.add_argument("--max-stream-held-bytes", type=int, dest="max_stream_held_bytes",
                   help="bytes of trades one PriceStream may hold")
    p.add_argument("--max-held-bytes", type=int, dest="max_held_bytes",
                   help="bytes of trades all PriceStreams together may hold")
    p.add_argument("--max-backtest-observations", type=int, dest="max_backtest_observations",
                   help="observations per RiskService.Backtest stream")
    p.add_argument("--max-backtest-message-observations", type=int, dest="max_backtest_message_observations",
                   help="observations per Backtest message")
    p.add_argument("--max-scenario-cells", type=int, dest="max_scenario_cells",
                   help="trades x scenarios one RunScenarioRisk may ask")
    p.add_argument("--keepalive-min-ping", type=float, dest="keepalive_min_ping_s",
                   help="shortest interval (s) between a client's pings the server tolerates")
    p.add_argument("--keepalive-time", type=float, dest="keepalive_time_s",
                   help="the server pings an idle connection this often (s)")
    p.add_argument("--max-connection-age", type=float, dest="max_connection_age_s",
                   help="GOAWAY connections this old (s), so clients rebalance (0: never)")
    p.add_argument("--max-connection-age-grace", type=float, dest="max_connection_age_grace_s",
                   help="seconds the calls still open on an aged connection get")
    p.add_argument("--metrics-port", type=int, dest="metrics_port", help="Prometheus /metrics port (0: any free port, -1: off)")
    p.add_argument("--metrics-host", dest="metrics_host",
                   help="address of the metrics endpoint (plaintext HTTP; 0.0.0.0 exposes it on every interface)")
    p.add_argument("--otlp-endpoint", dest="otlp_endpoint",
                   help="OTLP/gRPC collector for OpenTelemetry spans (http://host:4317); unset: tracing off")
    p.add_argument("--trace-sample-ratio", type=float, dest="trace_sample_ratio",
                   help="share of new traces kept (0-1; a caller's sampled flag is followed)")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), dest="event_loop",
                   help="the server's event loop (uvloop unless it is not installed)")
    p.add_argument("--echo", action=argparse.BooleanOptionalAction, default=None,
                   help="serve pricegrid.v1.EchoService (for benchmarks; off by default)")
    p.add_argument("--tls-cert", dest="tls_cert", help="PEM certificate of the server (TLS)")
    p.add_argument("--tls-key", dest="tls_key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", dest="tls_client_ca", help="PEM CA bundle: require client certificates (mTLS)")
    p.add_argument("--allow-plaintext", action="store_true", default=None, dest="allow_plaintext",
                   help="serve plaintext on a non-loopback address (behind a TLS-terminating proxy)")
    p.add_argument("--auth-policy", dest="auth_policy", help="TOML file of roles, JWT keys and mTLS identities")
    p.add_argument("--store", help="the store of snapshots, portfolios and scenario sets: a SQLite file (':memory:'"
                                   " keeps nothing) or a postgresql:// URL shared by replicas")
    p.add_argument("--snapshot-max-age", type=float, dest="snapshot_max_age_s",
                   help="seconds after which a snapshot's as-of is flagged stale")
    p.add_argument("--log-level", dest="log_level", help="debug, info, warning or error")
    p.add_argument("--log-format", choices=("json", "console"), dest="log_format", help="one JSON object per line, or text")
    _name_variables_and_defaults(p)
    return p


def _name_variables_and_defaults(parser: argparse.ArgumentParser) -> None:
    """Each setting's help ends with its PRICEGRID_* variable and its default (what the
    server runs with when neither the flag nor the variable is given)."""
    import dataclasses

    from pricegrid.server.app.settings import Settings, variables

    names = {field: env for env, field in variables().items()}
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    for action in parser._actions:
        if action.dest not in names:
            continue
        default = defaults[action.dest]
        if action.dest == "store":
            default = "a SQLite file under $XDG_DATA_HOME/pricegrid"
        elif action.dest == "kernel_threads":
            default = f"the CPUs, {default} here"
        elif action.dest == "front_workers":
            default = f"the CPUs - 1, {default} here"
        elif default in ("", None):
            default = "unset"
        text = f"${names[action.dest]}; default: {default}".replace("%", "%%")
        action.help = f"{action.help} ({text})" if action.help else text


def health(argv) -> int:
    """Exit 0 when the server reports SERVING, 1 otherwise. TLS as the client commands take it
    (``pricegrid info``): $PRICEGRID_CA turns it on, $PRICEGRID_CERT and $PRICEGRID_KEY add a
    client certificate (mutual TLS); flags override them."""
    import os

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    p = argparse.ArgumentParser(prog="pricegrid health", description="Check a server through grpc.health.v1.")
    p.add_argument("--target", default=None,
                   help="host:port (default: $PRICEGRID_TARGET, else 127.0.0.1:$PRICEGRID_PORT or 50051)")
    p.add_argument("--service", default="", help="service name ('' for the whole server)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer (default: 2)")
    p.add_argument("--ca", default=os.environ.get("PRICEGRID_CA") or None,
                   help="PEM bundle of the CAs that sign the server's certificate: TLS (default: $PRICEGRID_CA; "
                        "unset: plaintext)")
    p.add_argument("--cert", default=os.environ.get("PRICEGRID_CERT") or None,
                   help="this client's PEM certificate, for mutual TLS (default: $PRICEGRID_CERT)")
    p.add_argument("--key", default=os.environ.get("PRICEGRID_KEY") or None,
                   help="its PEM private key (default: $PRICEGRID_KEY)")
    p.add_argument("--server-name", default=None,
                   help="the name the server's certificate must carry, when not the target's host "
                        "(a container checking itself on 127.0.0.1 with a certificate for its service name)")
    args = p.parse_args(argv)
    target = args.target or os.environ.get("PRICEGRID_TARGET") or \
        f"127.0.0.1:{os.environ.get('PRICEGRID_PORT') or 50051}"
    if (args.cert is None) != (args.key is None):
        print("pricegrid health: mutual TLS needs both a certificate and its key", file=sys.stderr)
        return 2
    try:
        if args.ca or args.cert:
            def read(file):
                with open(file, "rb") as fh:
                    return fh.read()

            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(args.ca) if args.ca else None,
                private_key=read(args.key) if args.key else None,
                certificate_chain=read(args.cert) if args.cert else None)
            options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target)
    except OSError as exc:
        print(f"pricegrid health: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        print(f"{target}: {exc.code().name} {exc.details()}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {name}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "health":
        return health(argv[1:])
    if argv and argv[0] == "serve":
        args = serve_parser().parse_args(argv[1:])
        try:
            settings = Settings.from_env(**vars(args))
        except ValueError as exc:
            print(f"pricegrid serve: {exc}", file=sys.stderr)
            return 2
        from pricegrid.server.app import logs
        from pricegrid.server.app.server import ConfigError, StartError, serve

        logs.configure(settings.log_level, settings.log_format)
        try:
            return serve(settings)
        except StartError as exc:  # a configuration refused: 2, as a bad setting; the machine (a busy port): 1
            print(f"pricegrid serve: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ConfigError) else 1
    print("usage: pricegrid {serve,health} ... (the other subcommands are the client CLI's)", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
