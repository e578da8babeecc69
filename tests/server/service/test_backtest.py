"""The running backtest (pricegrid.server.service.backtest.Backtest): fed in pieces it gives,
after every piece, exactly what one batch of the same observations gives; its window, newest
exceptions and caps; a bad message adds nothing."""

from __future__ import annotations

import numpy as np
import pytest

from pricegrid.server.domain import backtest as bt
from pricegrid.server.domain.backtest import BacktestSettings, VarConvention, Zone
from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.service.backtest import NEWEST_EXCEPTIONS, Backtest, BacktestLimits, backtest


def series(n: int, seed: int, *, clustered: bool = False, rate: float = 0.03):
    """P&L and a VaR of 2.33 (a 99% normal quantile) with exceptions at ``rate``, clustered
    (a volatility that jumps after a loss) or not."""
    rng = np.random.default_rng(seed)
    var = np.full(n, 2.33)
    scale = np.ones(n)
    if clustered:
        shocks = rng.random(n) < 0.01
        for i in np.flatnonzero(shocks):
            scale[i:i + 5] = 2.5
    pnl = rng.standard_normal(n) * scale * (1.0 + 2.0 * rate)
    return pnl, var


def splits(n: int, rng) -> list[int]:
    """Random message sizes summing to n, with empty and one-day messages among them."""
    out, left = [], n
    while left:
        k = int(rng.choice([0, 1, 1, 2, 7, 40, 250]))
        k = min(k, left)
        out.append(k)
        left -= k
    return out


@pytest.mark.parametrize("seed, window, clustered", [(1, 250, False), (2, 250, True), (3, 7, True), (4, 1, False),
                                                     (5, 5000, True)])
def test_the_running_result_equals_the_batch_result_at_every_step(seed, window, clustered):
    n = 1200
    pnl, var = series(n, seed, clustered=clustered)
    labels = [f"d{i}" for i in range(n)]
    settings = BacktestSettings(level=0.99, window=window)
    running = Backtest(settings)
    rng = np.random.default_rng(seed)
    done = 0
    for k in splits(n, rng):
        got = running.add(pnl[done:done + k], var[done:done + k], labels[done:done + k])
        done += k
        assert got == backtest(pnl[:done], var[:done], settings, labels[:done]), done
        # the window's exceptions, counted directly
        flags = -pnl[:done] > var[:done]
        light = got.traffic_light
        assert light.window_observations == min(done, window)
        assert light.window_exceptions == int(flags[max(0, done - window):].sum())
        assert got.exceptions == int(flags.sum()) and got.observations == done
        assert got.transitions.pairs == max(0, done - 1)
    assert got.exceptions > 5


def test_newest_exceptions_are_capped_and_keep_their_stream_index_and_label():
    n = 3000
    pnl, var = series(n, 9, rate=0.5)
    labels = [f"2020-01-01+{i}" for i in range(n)]
    running = Backtest()
    for start in range(0, n, 333):
        result = running.add(pnl[start:start + 333], var[start:start + 333], labels[start:start + 333])
    hits = np.flatnonzero(-pnl > var)
    assert len(hits) > NEWEST_EXCEPTIONS
    newest = result.newest_exceptions
    assert [e.index for e in newest] == hits[-NEWEST_EXCEPTIONS:].tolist()
    assert all(e.label == labels[e.index] and e.pnl == pnl[e.index] and e.var == var[e.index] for e in newest)


def test_a_pnl_quantile_var_is_the_loss_var_negated():
    pnl, var = series(600, 4)
    loss = backtest(pnl, var, BacktestSettings(var_convention=VarConvention.LOSS))
    quantile = backtest(pnl, -var, BacktestSettings(var_convention=VarConvention.PNL_QUANTILE))
    assert (quantile.exceptions, quantile.kupiec_pof, quantile.transitions, quantile.traffic_light) == \
           (loss.exceptions, loss.kupiec_pof, loss.transitions, loss.traffic_light)
    assert quantile.newest_exceptions[-1].var == -loss.newest_exceptions[-1].var  # as sent


def test_settings_may_be_repeated_not_changed():
    running = Backtest(BacktestSettings(level=0.975, window=500))
    running.confirm(BacktestSettings(level=0.975, window=500))
    with pytest.raises(ServiceError) as e:
        running.confirm(BacktestSettings(level=0.99, window=500, var_convention=VarConvention.PNL_QUANTILE))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert [v.field for v in e.value.violations] == ["settings.level", "settings.var_convention"]
    assert "0.99 differs from this stream's 0.975" in e.value.violations[0].description


def test_bad_settings_are_refused_when_the_backtest_starts():
    with pytest.raises(ServiceError) as e:
        Backtest(BacktestSettings(level=99.0, window=0))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert [v.field for v in e.value.violations] == ["settings.level", "settings.window"]


def test_a_bad_message_adds_nothing():
    running = Backtest()
    before = running.add([-1.0, -3.0], [2.0, 2.0])
    for pnl, var, labels, field in [
        ([1.0, np.nan], [1.0, 1.0], None, "pnl[1]"),
        ([1.0, -5.0], [np.inf, 1.0], None, "var[0]"),
        ([-5.0, 1.0], [1.0, -1.0], None, "var[1]"),
        ([-5.0, 1.0], [1.0], None, "var"),
        ([-5.0, 1.0], [1.0, 1.0], ["a"], "labels"),
        ([-5.0], [1.0], ["x" * 129], "labels[0]"),
    ]:
        with pytest.raises(ServiceError) as e:
            running.add(pnl, var, labels)
        assert e.value.code == Code.INVALID_ARGUMENT and e.value.violations[0].field == field
        assert running.result() == before
    assert "stream index 3" in _error(running, [1.0, np.nan], [1.0, 1.0]).violations[0].description


def _error(running, pnl, var):
    with pytest.raises(ServiceError) as e:
        running.add(pnl, var)
    return e.value


def test_caps_per_message_and_per_stream():
    running = Backtest(limits=BacktestLimits(max_observations=10, max_message_observations=4))
    running.add(np.zeros(4), np.ones(4))
    err = _error(running, np.zeros(5), np.ones(5))
    assert err.code == Code.RESOURCE_EXHAUSTED and "at most 4 per message" in err.message
    running.add(np.zeros(4), np.ones(4))
    err = _error(running, np.zeros(3), np.ones(3))
    assert err.code == Code.RESOURCE_EXHAUSTED and "at most 10 per stream" in err.message
    assert running.add(np.zeros(2), np.ones(2)).observations == 10  # up to the cap exactly


def test_no_observations_yet():
    result = Backtest().result()
    assert result.observations == 0 and result.traffic_light.zone == Zone.NONE
    assert result.kupiec_pof.status == bt.StatisticStatus.UNDEFINED
    assert Backtest().add([], []).observations == 0


def test_stored_days_go_in_pieces_past_the_message_cap_and_stop_when_asked():
    """A stored history's days are not a message's: the per-message cap does not apply (they
    go in pieces of it, the same result as one batch), the stream's does; a Watch that says
    stop is asked between pieces."""
    rng = np.random.default_rng(8)
    pnl, var = rng.standard_normal(47) * 1.5, np.full(47, 2.0)
    labels = [f"d{i}" for i in range(47)]
    limits = BacktestLimits(max_observations=50, max_message_observations=10)
    running = Backtest(BacktestSettings(window=20), limits)
    assert running.add_stored(pnl, var, labels) == backtest(pnl, var, BacktestSettings(window=20), labels)
    assert running.add([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]).observations == 50
    with pytest.raises(ServiceError) as e:
        Backtest(BacktestSettings(), limits).add_stored(np.zeros(51), np.ones(51))
    assert e.value.code == Code.RESOURCE_EXHAUSTED and e.value.violations[0].field == "history"
    asked = []

    def watch():
        asked.append(1)
        return Code.CANCELLED if len(asked) == 3 else None

    stopped = Backtest(BacktestSettings(), limits)
    with pytest.raises(ServiceError) as e:
        stopped.add_stored(pnl, var, None, watch)
    assert e.value.code == Code.CANCELLED and stopped.observations == 20  # two pieces in, then stopped
