"""The catalogue of engines: what each (product, model, engine) prices, as data.

An :class:`EngineSpec` says which product and model an engine prices, the model reference
and version that every result names, the measures it computes and how each is obtained,
whether it is the default for its product and model, which engine settings it reads, and
what its work costs (its measured
:class:`~pricegrid.server.domain.cost.EngineCost`, from which the service estimates a request's
cost before running it, and how many rows fit in one cancellable chunk). The pricers fill the catalogue (their kernels know their
measures); the service reads it and hands specs to the transport, which never sees a pricer.

:class:`Settings` are the engine settings of a request after the server's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine, Measure, Model, ModelRef, takes_dividend


@dataclass(frozen=True)
class Settings:
    """Engine settings after defaults (pricegrid.v1.EngineSettings)."""

    paths: int = 100_000
    seed: int = 1
    max_step: float = 1.0 / 52.0
    antithetic: bool = True
    control_variate: bool = True
    sobol: bool = False
    brownian_bridge: Optional[bool] = None  # None: on with Sobol
    tree_steps: int = 801
    american_scheme: int = 2  # 1 fast, 2 accurate, 3 high precision
    #: internal, never from the wire (rpc.requests.settings_of does not read it): the spot is
    #: a move of the trades' own (a scenario's, set by service.scenarios), so one at or beyond
    #: a barrier was touched on the way and is priced as touched (ext/pg_barrier.h, note 3);
    #: off, a spot beyond a barrier is the trade's INVALID_ARGUMENT (a wrong type or level)
    spot_beyond_barrier_touched: bool = False

    @property
    def bridge(self) -> bool:
        return self.sobol if self.brownian_bridge is None else self.brownian_bridge


DEFAULT_SETTINGS = Settings()

#: the EngineSettings a Monte Carlo engine reads (the fields of pricegrid.v1.EngineSettings)
MONTE_CARLO_SETTINGS = ("paths", "seed", "max_step", "antithetic", "control_variate", "sobol", "brownian_bridge")

#: work per chunk: a chunk is cut so that it is seen between cancellation checks
_MC_PATHS_PER_CHUNK = 4_000_000
_TREE_NODES_PER_CHUNK = 2_000_000
_FIXED_POINT_ROWS_PER_CHUNK = 32_768


@dataclass(frozen=True)
class EngineSpec:
    """One engine of the catalogue (data only: the pricers hold the code that runs it)."""

    product: str
    model: Model
    engine: Engine
    ref: ModelRef
    measures: tuple[Measure, ...]
    methods: dict = field(hash=False, compare=False)  # Measure -> GreekMethod
    validated_against: str = ""
    default: bool = False
    monte_carlo: bool = False
    underlying: str = "spot"  # the market input the model needs: "spot" or "forward"
    #: the kernel writes each row's forward and discount factor itself (its runner takes
    #: ``effective=(forward, discount_factor)``); else the service derives them
    kernel_writes_forward: bool = False
    #: the runner also takes a snapshot underlying as it is (a ``FusedMarket`` of the pricer
    #: layer) and reads each row's market from it in the same pass as the pricing
    fuses_market: bool = False
    #: the engine prices a snapshot's discrete cash dividends itself (escrowed model on its
    #: own grid): its runner reads ``MarketBatch.cash_dividends``, ``underlying`` is the spot
    cash_dividends: bool = False
    #: what its work costs (measured; see pricegrid.server.domain.cost); None: not estimated
    cost: Optional[EngineCost] = field(default=None, hash=False, compare=False)
    #: its kernel polls a stop block for cancellation and the deadline while it runs (its
    #: runner takes ``stop=``, an int64 array laid out as ext/pg_stop.h)
    polls_stop: bool = False
    #: the EngineSettings fields its runner reads (names as in the contract); a request that
    #: sets any other is refused, so that no setting is silently ignored
    settings: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, Model, Engine]:
        return (self.product, self.model, self.engine)

    @property
    def takes_dividend(self) -> bool:
        return takes_dividend(self.model)

    def chunk_rows(self, settings: Settings, cap: int) -> int:
        """Rows per chunk for this engine's cost per row (at most ``cap``)."""
        step = max(1, cap)
        if self.monte_carlo:
            return max(1, min(step, _MC_PATHS_PER_CHUNK // max(1, settings.paths)))
        if self.engine == Engine.BINOMIAL_TREE:
            return max(1, min(step, _TREE_NODES_PER_CHUNK // max(1, settings.tree_steps)))
        if self.engine == Engine.FIXED_POINT:
            return min(step, _FIXED_POINT_ROWS_PER_CHUNK)
        return step


class Catalogue:
    """Every engine the server prices with, by (product, model, engine)."""

    def __init__(self, specs=()):
        self._specs: dict[tuple[str, Model, Engine], EngineSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: EngineSpec) -> None:
        if spec.key in self._specs:
            raise ValueError(f"engine {spec.key} registered twice")
        if spec.default and any(
            s.default and s.product == spec.product and s.model == spec.model for s in self._specs.values()
        ):
            raise ValueError(f"two default engines for {spec.product} under {spec.model.name}")
        self._specs[spec.key] = spec

    def __iter__(self) -> Iterator[EngineSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def find(self, product: str, model: Model, engine: Engine = Engine.UNSPECIFIED) -> Optional[EngineSpec]:
        """The engine asked for, or the product's default under the model when unspecified."""
        if engine == Engine.UNSPECIFIED:
            for spec in self._specs.values():
                if spec.product == product and spec.model == model and spec.default:
                    return spec
            return None
        return self._specs.get((product, model, engine))

    def offered(self, product: str) -> list[EngineSpec]:
        return [s for s in self._specs.values() if s.product == product]

    def products(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.product for s in self._specs.values()))
