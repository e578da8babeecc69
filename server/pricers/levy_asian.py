"""Arithmetic Asian options with continuous averaging by Levy's approximation (kernel:
``pricegrid.ext.asian``). Validation: see ``validated_against`` below."""

from __future__ import annotations

from pricegrid.ext import asian as _asian
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register
from pricegrid.server.pricers.turnbull_wakeman_asian import _ASIAN_VALIDATION, ASIAN_COST, _run_asian


register("asian", BSM_AND_BLACK_76, Engine.LEVY, name="analytic_asian_levy", version="1.0.0", kernel=_asian,
         run=_run_asian(_asian.LEVY),
         validated_against=_ASIAN_VALIDATION.format(engine="ContinuousArithmeticAsianLevyEngine"), cost=ASIAN_COST)
