"""A bare grpcio echo server: the floor that ``pricegrid bench latency`` measures us against.

No interceptors, no parsing, no logging or metrics: EchoService/Echo returns the request's
bytes and EchoStream each message's bytes, through grpcio's own generic handlers. It runs
in a process of its own beside the server under test, with the same thread-pool size and
the same allocator setting as ``pricegrid serve``, so the only difference between the two is
what pricegrid does with a request:

    python -m pricegrid.clients._bare_echo --workers 16     # prints "port N", serves until stdin closes

Bound to 127.0.0.1 on an ephemeral port; it stops when its standard input closes (the bench
holds the pipe) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "pricegrid.v1.EchoService"


def _tune_malloc() -> None:
    """As ``pricegrid serve`` does: large blocks from the heap, not fresh mmap()s per reply."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def start(workers: int = 16) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
        "EchoStream": grpc.stream_stream_rpc_method_handler(lambda requests, context: requests),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pricegrid.clients._bare_echo", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=16)
    args = p.parse_args(argv)
    _tune_malloc()
    server, port = start(args.workers)
    print(f"port {port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    server.stop(0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
