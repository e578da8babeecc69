"""Admission control: how many calls of a class run at once, and what happens to the rest.

The server runs on one asyncio event loop (see pricegrid.server.app.server); every decision
here is taken on that loop, so a gate is a pair of counters and a short deque, with no lock.

A :class:`Gate` admits up to ``limit`` calls of its class at once. A call that finds it full
may wait in a queue of at most ``queue`` callers for at most ``max_wait_s`` seconds (``None``:
until its own deadline), and is refused otherwise: RESOURCE_EXHAUSTED at once, with a
``grpc-retry-pushback-ms`` trailer saying when to try again (gRPC's retry policy honours it).
Nothing ever queues without bound. The queue is for bursts: once the gate has refused a
call, the next ``overload_s`` seconds count as sustained overload and a gate with a bounded
wait refuses at once instead of queueing (waiting would only add to the accepted calls'
latency, as CoDel reasons for packet queues). A slot is held for as long as the call's work runs, even
past the moment its caller stopped waiting (a kernel thread cannot be taken back), so a gate
never lets more work into its thread pool than the pool has threads.

A :class:`Lane` is one capacity class as the handlers see it: its gate, where its work runs
(a thread pool, or ``None``: inline on the event loop, for work of a few microseconds), the
largest request it reads, and the deadline it gives a call whose caller set none.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Optional

from structlog.contextvars import bind_contextvars

from pricegrid.server.domain.errors import Code, ServiceError

PUSHBACK = "grpc-retry-pushback-ms"
#: weight of a new hold time in a gate's moving average: a change in the work shows within a
#: few calls (68% of a step after four), one odd call moves it by a quarter
HOLD_WEIGHT = 0.25


class Refused(ServiceError):
    """RESOURCE_EXHAUSTED from admission control; ``pushback_ms`` goes out as the
    ``grpc-retry-pushback-ms`` trailer (a negative value asks the client not to retry)."""

    def __init__(self, message: str, pushback_ms: int):
        super().__init__(Code.RESOURCE_EXHAUSTED, message)
        self.pushback_ms = pushback_ms

    @property
    def trailer(self) -> tuple[str, str]:
        return (PUSHBACK, str(int(self.pushback_ms)))


class Gate:
    """At most ``limit`` calls at once, ``queue`` more waiting at most ``max_wait_s``."""

    def __init__(self, name: str, limit: int, *, queue: int = 0, max_wait_s: Optional[float] = 0.0,
                 min_pushback_ms: int = 1, overload_s: float = 0.1):
        if limit < 1 or queue < 0:
            raise ValueError("a gate needs limit >= 1 and queue >= 0")
        self.name = name
        self.limit = limit
        self.queue = queue
        self.max_wait_s = max_wait_s
        self.min_pushback_ms = min_pushback_ms
        self.overload_s = overload_s
        self._refused_at = -1e9  # time.monotonic() of the last refusal
        self.active = 0
        self.admitted = 0
        self.refused = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        # how long a slot is held: the first measured hold, then a moving average (weight
        # HOLD_WEIGHT); before any hold has ended, how long the first admitted call has held
        # its slot so far (it is still running), a lower bound that grows with it
        self._hold_ms: Optional[float] = None
        self._first_entered: Optional[float] = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_enter(self) -> bool:
        """Take a slot if one is free now (never waits)."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            self.admitted += 1
            if self._first_entered is None:
                self._first_entered = time.monotonic()
            return True
        return False

    async def enter(self, timeout: Optional[float] = None) -> None:
        """Take a slot, waiting in the queue if there is room; raises :class:`Refused`.
        ``timeout`` caps the wait further (the call's remaining deadline)."""
        if self.try_enter():
            return
        wait = self.max_wait_s if timeout is None else (timeout if self.max_wait_s is None else min(self.max_wait_s, timeout))
        if self.max_wait_s is not None and time.monotonic() - self._refused_at < self.overload_s:
            wait = 0.0  # sustained overload: fail fast rather than queue
        if len(self._waiters) >= self.queue or (wait is not None and wait <= 0):
            raise self.refusal()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(wait, _expire, waiter) if wait is not None else None
        try:
            granted = await waiter
        except asyncio.CancelledError:  # the caller went away while waiting
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.leave()  # a slot was handed over just before: pass it on
            else:
                _discard(self._waiters, waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not granted:
            _discard(self._waiters, waiter)
            raise self.refusal()
        self.admitted += 1

    def leave(self, held_s: Optional[float] = None) -> None:
        """Give the slot back (to the first waiter, if any) after holding it ``held_s``."""
        if held_s is not None:
            ms = held_s * 1e3
            self._hold_ms = ms if self._hold_ms is None else self._hold_ms + HOLD_WEIGHT * (ms - self._hold_ms)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes on; ``active`` is unchanged
                return
        self.active -= 1

    def pushback_ms(self) -> int:
        """When to try again: about how long a slot is held now, times the queue ahead."""
        ahead = 1 + len(self._waiters) / self.limit
        hold = self._hold_ms
        if hold is None:  # no hold has ended yet: the first call's so far
            hold = 0.0 if self._first_entered is None else (time.monotonic() - self._first_entered) * 1e3
        return max(self.min_pushback_ms, int(round(hold * ahead)))

    def refusal(self) -> Refused:
        self.refused += 1
        self._refused_at = time.monotonic()
        ms = self.pushback_ms()
        return Refused(f"the server is at capacity for {self.name} calls ({self.limit} running,"
                       f" {len(self._waiters)} waiting); retry in {ms} ms", ms)


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _discard(waiters: collections.deque, waiter) -> None:
    try:
        waiters.remove(waiter)
    except ValueError:
        pass


class StreamGate:
    """Open streams on this server: at most ``limit`` in all and ``per_connection`` on one
    connection (a peer address: one TCP connection), no queue; beyond either,
    RESOURCE_EXHAUSTED with a pushback. HTTP/2's own per-connection limit would make the
    client queue the excess calls, unary ones too, until their deadline, unseen here; the
    server sets that one higher (pricegrid.server.app.server.server_options) and refuses
    here instead."""

    def __init__(self, name: str, limit: int, pushback_ms: int = 1000, per_connection: Optional[int] = None):
        self.name = name
        self.limit = limit
        self.per_connection = per_connection
        self.open = 0
        self.refused = 0
        self._pushback_ms = pushback_ms
        self._by_peer: dict[str, int] = {}

    def enter(self, peer: str = "") -> None:
        if self.open >= self.limit:
            self.refused += 1
            raise Refused(f"the server already has {self.limit} streams open; retry in {self._pushback_ms} ms",
                          self._pushback_ms)
        held = self._by_peer.get(peer, 0)
        if self.per_connection is not None and held >= self.per_connection:
            self.refused += 1
            raise Refused(f"this connection already has {self.per_connection} streams open (max_connection_streams);"
                          f" retry in {self._pushback_ms} ms", self._pushback_ms)
        self._by_peer[peer] = held + 1
        self.open += 1

    def leave(self, peer: str = "") -> None:
        self.open -= 1
        held = self._by_peer.get(peer, 0) - 1
        if held > 0:
            self._by_peer[peer] = held
        else:
            self._by_peer.pop(peer, None)


class Call:
    """What a servicer sees of its call, safe to read from a worker thread: the request id,
    the deadline (the caller's, or the lane's default when the caller set none, as
    ``time.monotonic()``) and whether the caller went away. The subset of gRPC's
    ``ServicerContext`` the servicers use: ``is_active()``, ``time_remaining()`` and
    ``add_callback()`` (called once, on the event loop, when the call ends early).

    Also what observability reads: ``waited`` and ``computed``, the seconds the call waited
    for a slot and ran in a pool (summed over its lane runs; ``computed`` None: it never
    ran in one), ``trace`` (an rpc.tracing.CallTrace, None with tracing off) and
    ``priced_by`` (the ModelRef a servicer priced with, for the per-model metrics)."""

    __slots__ = ("request_id", "deadline", "cancelled", "_callbacks", "principal", "waited", "computed", "trace",
                 "priced_by")

    def __init__(self, request_id: str, deadline: float, principal=None, trace=None):
        self.request_id = request_id
        self.deadline = deadline
        self.principal = principal  # who called (rpc.auth.Principal), None without an auth policy
        self.cancelled = False
        self._callbacks: list = []
        self.waited = 0.0
        self.computed = None
        self.trace = trace
        self.priced_by = None

    def is_active(self) -> bool:
        """False once the caller cancelled (or the server stopped waiting for the work)."""
        return not self.cancelled

    def time_remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def add_callback(self, callback) -> bool:
        """Call ``callback()`` when the call ends early; False (not added) if it already has."""
        if self.cancelled:
            return False
        self._callbacks.append(callback)
        return True

    def cancel(self) -> None:
        """The caller went away or its deadline passed: tell the work (its callbacks)."""
        if self.cancelled:
            return
        self.cancelled = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def deadline_of(time_remaining: Optional[float], default_s: float) -> float:
    """The caller's deadline, or ``default_s`` from now when the caller set none (gRPC then
    reports None or a huge number), as ``time.monotonic()``."""
    if time_remaining is None or time_remaining > 1e8:
        return time.monotonic() + default_s
    return time.monotonic() + time_remaining


@dataclass
class Lane:
    """One capacity class: gate (None: not gated), executor (None: inline on the loop),
    the largest request in bytes, the deadline (seconds) when the caller sets none, and
    whether the handler answers DEADLINE_EXCEEDED itself when the work overruns it
    (``False`` for work that watches the deadline itself, as batches do between chunks)."""

    name: str
    gate: Optional[Gate]
    executor: Optional[Executor]
    max_request_bytes: int
    default_deadline_s: float
    enforce_deadline: bool = True

    def too_large(self, size: int, method: str) -> Optional[Refused]:
        if size <= self.max_request_bytes:
            return None
        # not worth retrying: the same request is refused again (a negative pushback says so)
        return Refused(f"request is {size} bytes; {method} takes at most {self.max_request_bytes} bytes", -1)

    async def run(self, call: Call, fn, *args):
        """``fn(*args)`` in the lane's executor once the gate admits it (inline without an
        executor). The gate's slot is held until ``fn`` returns, even when the caller has
        gone (then ``call`` is cancelled, for work that polls it or registered a callback).
        In the pool, ``fn`` runs in a copy of the caller's context with the request id bound
        for structlog (every log line it writes carries it); the wait for the slot and the
        time in the pool are added to ``call.waited`` and ``call.computed``."""
        if self.executor is None:
            return fn(*args)
        gate = self.gate
        t0 = time.perf_counter()
        if gate is not None:
            await gate.enter(call.time_remaining())
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        call.waited += started - t0
        context = contextvars.copy_context()
        context.run(bind_contextvars, request_id=call.request_id)
        try:
            future = loop.run_in_executor(self.executor, context.run, fn, *args)
        except BaseException:
            if gate is not None:
                gate.leave()
            raise
        future.add_done_callback(_release(gate, started))
        try:
            if self.enforce_deadline:
                return await asyncio.wait_for(asyncio.shield(future), call.time_remaining())
            return await asyncio.shield(future)  # a cancelled caller must not free the slot early
        except (asyncio.TimeoutError, TimeoutError):
            call.cancel()
            raise ServiceError(Code.DEADLINE_EXCEEDED, "deadline exceeded: the call ran past its deadline") from None
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            call.computed = (call.computed or 0.0) + (time.perf_counter() - started)


def _release(gate: Optional[Gate], started: float):
    def done(future: asyncio.Future) -> None:
        if gate is not None:
            gate.leave(time.perf_counter() - started)
        if not future.cancelled():
            future.exception()  # retrieved: an abandoned call's error is not "never retrieved"

    return done


@dataclass
class Lanes:
    """The server's capacity classes: ``front`` (per-trade pricing off the lean path, implied
    vol), ``stream`` (PriceStream messages off the lean path: the front office's gate and pool,
    the stream message size), ``inline`` (microseconds of work on the loop, per-trade size),
    ``batch`` (columnar batches), ``market`` (market data) and ``echo`` (inline, any size)."""

    front: Lane
    stream: Lane
    inline: Lane
    batch: Lane
    market: Lane
    echo: Lane
