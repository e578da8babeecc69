"""pricegrid.clients._copy: the streaming copy RiskClient uses to place reply columns."""

import numpy as np
import pytest

from pricegrid.clients._copy import STREAM_BYTES, copy_into


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, STREAM_BYTES // 8 - 1, STREAM_BYTES // 8, 3 * STREAM_BYTES // 8 + 5])
@pytest.mark.parametrize("offset", [0, 1, 3, 8])
def test_copy_into_writes_exactly_the_source_at_every_alignment(n, offset):
    rng = np.random.default_rng(n + offset)
    src = np.frombuffer(rng.standard_normal(n).tobytes(), dtype="<f8")  # read-only, as from a reply
    whole = np.full(n + offset + 5, -1.0)
    copy_into(whole[offset : offset + n], src)
    assert np.array_equal(whole[offset : offset + n], src)
    assert (whole[:offset] == -1.0).all() and (whole[offset + n :] == -1.0).all()


def test_copy_into_keeps_nan_and_signed_zero_bits():
    n = STREAM_BYTES // 8 + 3
    src = np.zeros(n)
    src[::3] = np.nan
    src[1::3] = -0.0
    dst = np.ones(n)
    copy_into(dst, src)
    assert dst.tobytes() == src.tobytes()


def test_copy_into_refuses_unequal_lengths_and_strided_views():
    with pytest.raises(ValueError, match="3 values for 4 places"):
        copy_into(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError):
        copy_into(np.zeros(8)[::2], np.zeros(4))


# ------------------------------------------------------------------ PayloadBuffers
from pricegrid.clients._copy import KEEP_BYTES, PayloadBuffers  # noqa: E402


def _parts(rng, sizes):
    """bytes and memoryviews of array slices, as _PreparedBatch.payload hands them over."""
    parts = []
    for i, n in enumerate(sizes):
        if i % 2:
            a = rng.standard_normal(n // 8 + 3)
            parts.append(memoryview(a[1 : 1 + n // 8]).cast("B"))
        else:
            parts.append(rng.bytes(n))
    return parts


def test_payload_join_is_bytes_join_for_any_parts():
    rng = np.random.default_rng(7)
    pool = PayloadBuffers(3, min_bytes=0)
    for sizes in ([0], [5], [3, 0, 8 * 1000, 17], [KEEP_BYTES, 8 * 40_000, 1, 64]):
        parts = _parts(rng, sizes)
        want = b"".join(parts)
        got = pool.join(parts, len(want))
        assert type(got) is bytes and got == want


def test_a_held_payload_is_never_rewritten_and_a_released_one_is_reused():
    rng = np.random.default_rng(8)
    pool = PayloadBuffers(4)
    first = _parts(rng, [100, 8 * 20_000])
    held = pool.join(first, len(b"".join(first)))
    copy_of_held = bytes(memoryview(held))  # a copy (bytes(held) would be the same object)
    assert copy_of_held is not held
    second = _parts(rng, [100, 8 * 20_000])
    other = pool.join(second, len(held))
    assert other is not held and held == copy_of_held and other == b"".join(second)
    address = id(other)
    del other  # let go: the next payload of that size goes into the same bytes
    third = _parts(rng, [100, 8 * 20_000])
    reused = pool.join(third, len(held))
    assert id(reused) == address and reused == b"".join(third)
    assert held == copy_of_held and pool.kept == 2


def test_a_rewritten_payload_hashes_as_its_new_content():
    rng = np.random.default_rng(9)
    pool = PayloadBuffers(1)
    a = pool.join([rng.bytes(KEEP_BYTES)], KEEP_BYTES)
    hash(a)  # cached in the object
    address = id(a)
    del a
    new = rng.bytes(KEEP_BYTES)
    b = pool.join([new], KEEP_BYTES)
    assert id(b) == address and hash(b) == hash(new) and b == new


def test_the_pool_keeps_at_most_capacity_and_no_small_payloads():
    rng = np.random.default_rng(10)
    pool = PayloadBuffers(2)
    held = [pool.join([rng.bytes(KEEP_BYTES + i)], KEEP_BYTES + i) for i in range(4)]
    assert pool.kept == 2 and pool.kept_bytes == 2 * KEEP_BYTES + 1
    small = pool.join([b"abc"], 3)
    assert small == b"abc" and pool.kept == 2
    # a free buffer of another size makes room for the size now needed
    del held[:2]
    size = KEEP_BYTES + 10
    c = pool.join([rng.bytes(size)], size)
    assert len(c) == size and pool.kept == 2 and pool.kept_bytes == KEEP_BYTES + size
    pool.clear()
    assert pool.kept == 0 and pool.kept_bytes == 0 and held[0] is not None


def test_payload_join_refuses_parts_of_another_size():
    pool = PayloadBuffers(2, min_bytes=0)
    with pytest.raises(ValueError, match="come to 6 bytes, not 7"):
        pool.join([b"abc", b"def"], 7)
    with pytest.raises(ValueError, match="capacity"):
        PayloadBuffers(-1)
    assert pool.kept == 0  # nothing taken for a refused payload
