"""The ``pricegrid`` console command: ``serve`` runs the server; every other subcommand
(price, iv, price-file, info, bench) is the client CLI in :mod:`pricegrid.clients.cli`."""

from __future__ import annotations

import argparse
import sys

from pricegrid.server.app.settings import Settings


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pricegrid serve",
        description="Start the pricegrid gRPC server. Flags override PRICEGRID_* environment variables.",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--kernel-threads", type=int, dest="kernel_threads")
    p.add_argument("--max-message-bytes", type=int, dest="max_message_bytes")
    p.add_argument("--max-rows", type=int, dest="max_rows")
    p.add_argument("--chunk-rows", type=int, dest="chunk_rows")
    p.add_argument("--default-deadline", type=float, dest="default_deadline_s")
    p.add_argument("--grace", type=float, dest="grace_s")
    p.add_argument("--max-stream-trades", type=int, dest="max_stream_trades")
    p.add_argument("--metrics-port", type=int, dest="metrics_port")
    p.add_argument("--no-echo", action="store_false", dest="echo", default=None)
    p.add_argument("--log-level", dest="log_level")
    p.add_argument("--log-format", choices=("json", "console"), dest="log_format")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        args = serve_parser().parse_args(argv[1:])
        try:
            settings = Settings.from_env(**vars(args))
        except ValueError as exc:
            print(f"pricegrid serve: {exc}", file=sys.stderr)
            return 2
        from pricegrid.server.app import logs
        from pricegrid.server.app.server import serve

        logs.configure(settings.log_level, settings.log_format)
        return serve(settings)
    from pricegrid.clients.cli import main as client_main

    return client_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
