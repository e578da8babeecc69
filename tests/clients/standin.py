"""A stand-in gRPC server for the few client behaviours our real server cannot be made to
show on cue: a replica answering UNAVAILABLE, or one too slow for the caller's deadline.
Everything else is tested against the real server (tests/conftest.py)."""

import threading
import time
from concurrent import futures

import grpc

from pricegrid.v1 import pricing_pb2 as pb


class StandIn:
    """Serves PricingService.Price (and PriceStream): fails UNAVAILABLE the first
    ``failures`` times, and sleeps ``delay`` seconds before each answer."""

    def __init__(self, *, failures: int = 0, delay: float = 0.0):
        self.failures = failures
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def price(request, context):
            with self._lock:
                self.calls += 1
                calls = self.calls
            if calls <= self.failures:
                context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
            time.sleep(self.delay)
            return pb.PriceResponse(price=42.0)

        def stream(requests, context):
            for message in requests:
                time.sleep(self.delay)
                yield pb.PriceStreamResponse(correlation_id=message.correlation_id, result=pb.PriceResponse(price=42.0))

        handler = grpc.method_handlers_generic_handler(
            "pricegrid.v1.PricingService",
            {
                "Price": grpc.unary_unary_rpc_method_handler(
                    price, request_deserializer=pb.PriceRequest.FromString, response_serializer=pb.PriceResponse.SerializeToString
                ),
                "PriceStream": grpc.stream_stream_rpc_method_handler(
                    stream, request_deserializer=pb.PriceStreamRequest.FromString, response_serializer=pb.PriceStreamResponse.SerializeToString
                ),
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self):
        self.server.stop(0).wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
