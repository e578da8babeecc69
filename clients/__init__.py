"""pricegrid.clients: front-office and risk clients for the pricegrid service, and its CLI.

    >>> from pricegrid.clients import FrontOfficeClient, RiskClient, EuropeanOption, Market
    >>> with FrontOfficeClient(target="127.0.0.1:50051") as client:
    ...     client.price(EuropeanOption(option_type="call", strike=100.0, expiry=0.5),
    ...                  Market(spot=100.0, rate=0.05, volatility=0.2),
    ...                  measures=("delta", "vega")).price

``FrontOfficeClient`` (and ``AsyncFrontOfficeClient``) price one trade at a time, over unary
calls or one long-lived stream, and tick trades held on a stream; ``RiskClient`` prices
numpy columns (or a pandas DataFrame) in concurrent chunks and backtests VaR models. Every
failure is a ``PricingError``. ``pricegrid.clients.testing.FakeChannel`` runs them without a
server.

Clients depend only on the ``pricegrid.v1`` contract, grpc and numpy (pandas, tqdm and
matplotlib where asked for).
"""

from ._aio import AsyncFrontOfficeClient, AsyncPriceStreamSession
from ._aio_risk import AsyncRiskClient
from ._config import USE_CLIENT_DEFAULT, RetryConfig, default_target
from ._auth import TokenSource, tls_credentials
from ._convert import StreamReply
from ._errors import PricingError, RowError
from ._frontoffice import FrontOfficeClient, PriceStreamSession
from ._models import (
    DAY_COUNTS,
    ENGINES,
    MEASURES,
    MODELS,
    AmericanOption,
    AsianOption,
    BarrierOption,
    DigitalOption,
    DoubleBarrierOption,
    EffectiveInputs,
    EngineSettings,
    EuropeanOption,
    HestonParameters,
    LookbackOption,
    TouchOption,
    ExpiryDates,
    Greeks,
    ImpliedVolResult,
    Market,
    MarketUpdate,
    MarketUsed,
    ModelInfo,
    ModelRef,
    PriceResult,
    ServerInfo,
    ServerLimits,
)
from ._market import MarketClient, SnapshotInfo, grid_surface, load_snapshot
from ._market import Finding as SnapshotFinding
from ._backtest import (BacktestException, Backtester, BacktestResult, LikelihoodRatioTest, StoredBacktestHistory,
                        TrafficLight)
from ._scenarios import (BookUsed, ScenarioRiskResult, ScenarioRowError, Shift, StoredPortfolio, StoredScenarioSet,
                         TaylorReport, WorstCaseResult)
from ._risk import BatchResult, BatchStats, RiskClient

__all__ = [
    "AmericanOption",
    "AsianOption",
    "BarrierOption",
    "DigitalOption",
    "DoubleBarrierOption",
    "ENGINES",
    "EngineSettings",
    "HestonParameters",
    "LikelihoodRatioTest",
    "LookbackOption",
    "TouchOption",
    "AsyncFrontOfficeClient",
    "AsyncPriceStreamSession",
    "AsyncRiskClient",
    "BacktestException",
    "BacktestResult",
    "ScenarioRiskResult",
    "BookUsed",
    "StoredPortfolio",
    "StoredScenarioSet",
    "StoredBacktestHistory",
    "WorstCaseResult",
    "ScenarioRowError",
    "Shift",
    "TaylorReport",
    "Backtester",
    "BatchResult",
    "BatchStats",
    "DAY_COUNTS",
    "EffectiveInputs",
    "EuropeanOption",
    "ExpiryDates",
    "FrontOfficeClient",
    "MarketClient",
    "Greeks",
    "ImpliedVolResult",
    "MEASURES",
    "MODELS",
    "Market",
    "MarketUpdate",
    "MarketUsed",
    "ModelInfo",
    "ModelRef",
    "PriceResult",
    "PriceStreamSession",
    "PricingError",
    "RetryConfig",
    "RiskClient",
    "SnapshotFinding",
    "SnapshotInfo",
    "grid_surface",
    "load_snapshot",
    "tls_credentials",
    "RowError",
    "ServerInfo",
    "ServerLimits",
    "StreamReply",
    "TokenSource",
    "TrafficLight",
    "USE_CLIENT_DEFAULT",
    "default_target",
]
