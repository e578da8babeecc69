"""The ``pricegrid`` console command, belonging to neither the server nor the clients.

``pricegrid serve`` and ``pricegrid health`` run the server's side
(:mod:`pricegrid.server.app.cli`); ``pricegrid bench`` is a tool (:mod:`pricegrid.tools.bench`);
every other subcommand (price, iv, price-file, info, snapshot, risk) is the client CLI
(:mod:`pricegrid.clients.cli`). The layers stay apart: the app never imports a client, a
client never imports the server or a tool; only this dispatch knows them all.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

SERVER_COMMANDS = ("serve", "health")
TOOL_COMMANDS = ("bench",)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in SERVER_COMMANDS:
        from pricegrid.server.app.cli import main as server_main

        return server_main(argv)
    if argv[:1] and argv[0] in TOOL_COMMANDS:
        from pricegrid.tools.bench import main as bench_main

        return bench_main(argv[1:])
    from pricegrid.clients.cli import main as client_main

    return client_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
