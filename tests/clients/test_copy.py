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
