"""MarketDataService's snapshot cache against deletes, on a real SQLite file and on the
PostgreSQL server the suite starts: a fill whose store read overlaps a delete is not cached
(a store wrapper holds the read until the delete is done, so the race happens every time),
and a delete by another service on the same store is seen within MarketSettings.recheck."""

import dataclasses
import datetime as dt
import threading
import time

import pytest

from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.service import market as market_service
from pricegrid.server.service.market import MarketDataService, MarketSettings
from tests.server.store.test_sqlite import T0, make
from tests.server.store.test_stores import opener  # noqa: F401 (the fixture: SQLite file, PostgreSQL)

_SETTINGS = MarketSettings(max_age=dt.timedelta(days=10_000))


def _service(store, recheck_ms: float = 60_000.0) -> MarketDataService:
    return MarketDataService(store, dataclasses.replace(_SETTINGS, recheck=dt.timedelta(milliseconds=recheck_ms)),
                             clock=lambda: T0 + dt.timedelta(hours=1))


class _HeldRead:
    """A store whose next ``get`` reads the row, then waits until released."""

    def __init__(self, inner):
        self.inner = inner
        self.read = threading.Event()
        self.release = threading.Event()
        self.hold = False

    def get(self, snapshot_id):
        record = self.inner.get(snapshot_id)
        if self.hold:
            self.hold = False
            self.read.set()
            assert self.release.wait(10)
        return record

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_fill_that_lands_after_a_delete_is_not_cached(opener):  # noqa: F811
    store = _HeldRead(opener())
    service = _service(store)
    snapshot_id = service.put(make())[0].snapshot_id
    store.hold = True
    got = []
    reader = threading.Thread(target=lambda: got.append(service.snapshot(snapshot_id)))
    reader.start()
    assert store.read.wait(10)  # the row is read, the fill not yet in the cache
    assert service.delete(snapshot_id) == snapshot_id
    store.release.set()
    reader.join(10)
    assert got and got[0] is not None  # the read began before the delete: it may be answered
    assert service.snapshot(snapshot_id) is None  # but nothing priced after the delete finds it
    with pytest.raises(ServiceError) as e:
        service.get(snapshot_id)
    assert e.value.code == Code.NOT_FOUND


def test_another_services_delete_is_seen_within_the_recheck_bound(opener):  # noqa: F811
    first, second = _service(opener(), recheck_ms=100.0), _service(opener())
    snapshot_id = first.put(make())[0].snapshot_id
    snapshot = first.snapshot(snapshot_id)
    assert snapshot is not None and second.snapshot(snapshot_id) is not None  # both cache it
    prepared, _ = market_service.prepare(snapshot_id, snapshot, "SPX", "spot")
    assert market_service.prepare(snapshot_id, snapshot, "SPX", "spot")[0] is prepared  # cached
    assert second.delete(snapshot_id) == snapshot_id
    assert second.snapshot(snapshot_id) is None  # its own delete: at once
    assert market_service.prepare(snapshot_id, snapshot, "SPX", "spot")[0] is not prepared  # dropped
    time.sleep(0.15)
    assert first.snapshot(snapshot_id) is None  # the other's: within recheck
    assert first.snapshot(snapshot_id) is None


def test_a_delete_that_finds_the_id_gone_still_clears_the_cache(opener):  # noqa: F811
    first, second = _service(opener()), _service(opener())  # recheck a minute: only a delete clears it
    snapshot_id = first.put(make())[0].snapshot_id
    assert first.snapshot(snapshot_id) is not None
    second.delete(snapshot_id)
    assert first.snapshot(snapshot_id) is not None  # cached, not rechecked yet
    with pytest.raises(ServiceError) as e:
        first.delete(snapshot_id)
    assert e.value.code == Code.NOT_FOUND
    assert first.snapshot(snapshot_id) is None


def test_a_cached_snapshot_still_stored_stays_cached(opener):  # noqa: F811
    store = opener()
    service = _service(store, recheck_ms=0.0)  # every read checks
    snapshot_id = service.put(make())[0].snapshot_id
    first = service.snapshot(snapshot_id)
    calls = []
    real_get = store.get
    store.get = lambda i: calls.append(i) or real_get(i)
    assert service.snapshot(snapshot_id) is first and service.snapshot(snapshot_id) is first
    assert calls == []  # checked with exists, not read again


class _Down:
    """A store whose ``exists`` fails as an unreachable PostgreSQL does (UNAVAILABLE), and
    records each call's connection wait."""

    def __init__(self, inner):
        self.inner = inner
        self.down = False
        self.waits = []

    def exists(self, snapshot_id, timeout=None):
        self.waits.append(timeout)
        if self.down:
            raise ServiceError(Code.UNAVAILABLE, "the store is unavailable; retry later")
        return self.inner.exists(snapshot_id, timeout=timeout)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_cached_snapshot_is_served_while_the_store_is_down_and_checked_once_a_period(opener):  # noqa: F811
    """The content of a snapshot never changes: with the store down, a cached one prices on
    (its check fails UNAVAILABLE: served, checked again a period later) instead of failing
    every Price and holding a front-office slot while the pool waits; one caller per period
    checks, with a short connection wait (MarketSettings.recheck_wait)."""
    store = _Down(opener())
    service = _service(store, recheck_ms=100.0)
    snapshot_id = service.put(make())[0].snapshot_id
    cached = service.snapshot(snapshot_id)
    store.down = True
    time.sleep(0.12)
    assert [service.snapshot(snapshot_id) for _ in range(5)] == [cached] * 5
    assert store.waits == [0.25]  # one check (the other four within the period it began)
    time.sleep(0.12)
    assert service.snapshot(snapshot_id) is cached and len(store.waits) == 2
    store.down = False
    store.inner.delete(snapshot_id)  # another replica's delete while this one could not check
    time.sleep(0.12)
    assert service.snapshot(snapshot_id) is None  # seen at the first check the store answers
