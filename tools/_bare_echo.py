"""A bare grpcio echo server: the floor that ``pricegrid bench latency`` measures us against.

No interceptors, no parsing, no logging or metrics: EchoService/Echo returns the request's
bytes and EchoStream each message's bytes, through grpcio's own generic handlers. It runs
in a process of its own beside the server under test, with the same allocator setting as
``pricegrid serve``, so the only difference between the two is what pricegrid does with a
request. Two kinds: the synchronous server on a thread pool (``--workers``), and with
``--aio`` a ``grpc.aio`` server whose handlers are coroutines on one event loop, as
``pricegrid serve`` runs (uvloop's, as ``pricegrid serve`` uses by default; ``--loop asyncio``
for asyncio's own):

    python -m pricegrid.tools._bare_echo --workers 16     # prints "port N", serves until stdin closes
    python -m pricegrid.tools._bare_echo --aio

Bound to 127.0.0.1 on an ephemeral port; it stops when its standard input closes (the bench
holds the pipe) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from concurrent import futures

import grpc
import grpc.aio

SERVICE = "pricegrid.v1.EchoService"


def tune_malloc() -> None:
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


async def _echo(request, context):
    return request


async def _echo_stream(request_iterator, context):
    async for message in request_iterator:
        yield message


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def start_aio(loop_kind: str = "uvloop") -> tuple[grpc.aio.Server, int, asyncio.AbstractEventLoop]:
    """The grpc.aio echo server on an event loop (``loop_kind``: uvloop or asyncio; asyncio
    when uvloop is not installed, as the server does) in a thread of its own."""
    loop = new_event_loop(loop_kind)
    threading.Thread(target=loop.run_forever, name="bare-echo-loop", daemon=True).start()

    async def build():
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Echo": grpc.unary_unary_rpc_method_handler(_echo),
            "EchoStream": grpc.stream_stream_rpc_method_handler(_echo_stream),
        }),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(build(), loop).result(30)
    return server, port, loop


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pricegrid.tools._bare_echo", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--aio", action="store_true", help="a grpc.aio server (coroutines on one event loop)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the --aio server's event loop")
    args = p.parse_args(argv)
    tune_malloc()
    if args.aio:
        server, port, loop = start_aio(args.loop)
        print(f"port {port} loop {type(loop).__module__.split('.')[0]}", flush=True)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait()
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
        return 0
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
