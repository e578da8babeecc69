"""Every engine the server prices with: the catalogue (data) and the runner of each row.

Importing this module imports each engine module once, and each adds its rows (see
:mod:`pricegrid.server.pricers._registry`). One module per engine, named method + model +
instrument; the order below is the order of ServerInfo's list.
"""

from __future__ import annotations

from pricegrid.server.pricers import (  # noqa: F401  (each registers its engines)
    analytic_european,
    fixed_point_american,
    leisen_reimer_american,
    analytic_heston_european,
    turnbull_wakeman_asian,
    levy_asian,
    analytic_lookback,
    analytic_barrier,
    analytic_double_barrier,
    analytic_digital,
    analytic_touch,
    monte_carlo,
)
from pricegrid.server.pricers._registry import CATALOGUE, runner

__all__ = ["CATALOGUE", "runner"]
