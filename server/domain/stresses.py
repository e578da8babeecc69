"""The stress catalogue shipped with the service, and scenario sets put together from
several named parts.

A catalogue stress is a hypothetical scenario sized from a published market move: one size
per *factor* it moves. A factor is a kind of market move with a fixed shift (quantity,
kind, shape) and default selectors:

=============  ======================================================  ==================
factor         the shift                                               default selectors
=============  ======================================================  ==================
equity         SPOT, RELATIVE, parallel                                every underlying
equity_vol     VOL, ABSOLUTE, buckets 1M 3M 1Y 2Y 5Y                   every surface
usd_rates      ZERO_RATE, ABSOLUTE, buckets 2Y 10Y (bp as 0.0001)      USD-*
=============  ======================================================  ==================

What a stress's figures are, and what is our modelling choice, is stated with each stress:

* The figures are moves of a published index or yield over a named window, each with its
  source. The S&P 500 move is applied to every equity spot the factor selects.
* equity_vol: the published figure is a 30-day index implied vol (VXO, VIX) in vol points.
  We apply it to the 1-month bucket and scale it by sqrt(1M / T) at longer pillars (1M: 1,
  3M: 0.577, 1Y: 0.289, 2Y: 0.204, 5Y: 0.129; flat before 1M and beyond 5Y), the usual
  stylised term structure of vol-of-vol (long-dated implied vols move less). This is a
  modelling choice, not a published figure.
* usd_rates: published changes of Treasury yields at 2 and 10 years, applied to the zero
  rates of the selected curves at those pillars (triangular weights between them, flat
  outside). A stress without a figure for a factor leaves it unmoved.

A run maps each factor to its own selectors with stress targets (factor -> glob patterns;
an empty list: the factor is not applied). A factor whose selectors match nothing in the
snapshot is an error naming it, as for any shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from pricegrid.server.domain.errors import Violations
from pricegrid.server.domain.scenarios import Buckets, Parallel, Quantity, ScenarioSet, Shift, ShiftKind, Shape, Smile


@dataclass(frozen=True)
class Factor:
    name: str
    quantity: Quantity
    kind: ShiftKind
    shape: Shape
    selector: tuple[str, ...]
    description: str


_ONE_MONTH = 1.0 / 12.0
_VOL_PILLARS = (_ONE_MONTH, 0.25, 1.0, 2.0, 5.0)

FACTORS: dict[str, Factor] = {f.name: f for f in (
    Factor("equity", Quantity.SPOT, ShiftKind.RELATIVE, Parallel(), ("*",),
           "equity spots, relative (-0.2047: down 20.47%)"),
    Factor("equity_vol", Quantity.VOL, ShiftKind.ABSOLUTE,
           Buckets(_VOL_PILLARS, ("1M", "3M", "1Y", "2Y", "5Y")), ("*",),
           "implied vols, absolute, a 30-day index move scaled by sqrt(1M/T) beyond 1M"),
    Factor("usd_rates", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, Buckets((2.0, 10.0), ("2Y", "10Y")), ("USD-*",),
           "USD zero rates, absolute, at 2 and 10 years"),
)}


def vol_term(move: float) -> tuple[float, ...]:
    """A 30-day implied vol move spread over the equity_vol pillars (see the module)."""
    return tuple(move * math.sqrt(_ONE_MONTH / t) for t in _VOL_PILLARS)


@dataclass(frozen=True)
class Stress:
    name: str
    title: str
    window: str
    description: str
    moves: Mapping[str, tuple[float, ...]]  # factor -> one size per component of its shape
    sources: tuple[str, ...]


CATALOGUE: dict[str, Stress] = {s.name: s for s in (
    Stress(
        "black-monday-1987", "Black Monday", "16 Oct 1987 - 19 Oct 1987 (one trading day)",
        "The S&P 500's largest one-day fall: equities -20.47%; 30-day index implied vol (VXO) "
        "from 36.37 to 150.19, +113.82 vol points. Rates not moved.",
        {"equity": (-0.2047,), "equity_vol": vol_term(1.5019 - 0.3637)},
        ("S&P 500 on 19 Oct 1987: -20.47%, its largest one-day percentage fall (S&P Dow Jones "
         "Indices closing values; CNBC, 'Black Monday - 22 Years Later', 19 Oct 2009: -20.5%).",
         "VXO daily closes 16 Oct 1987: 36.37, 19 Oct 1987: 150.19 (Cboe, '25 Years Ago the VXO Index "
         "Topped 150', Cboe Options Hub, 22 Oct 2012; www.cboe.com/VXO).")),
    Stress(
        "lehman-2008", "After Lehman", "12 Sep 2008 - 20 Nov 2008",
        "From the last close before Lehman Brothers' bankruptcy to the S&P 500's closing low of "
        "2008: equities from 1,251.70 to 752.44, -39.89%; VIX from 20.65 (29 Aug 2008) to its "
        "then record close of 80.86 (20 Nov 2008), +60.21 vol points. Rates not moved.",
        {"equity": (752.44 / 1251.70 - 1.0,), "equity_vol": vol_term(0.8086 - 0.2065)},
        ("S&P 500 close 12 Sep 2008: 1,251.70, the last before Lehman's bankruptcy (CNBC, 'S&P 500 Back "
         "at Pre-Lehman Bankruptcy Levels', Dec 2010; CBC News, Dec 2010); close 20 Nov 2008: 752.44 "
         "(S&P Dow Jones Indices; 'Closing milestones of the S&P 500').",
         "VIX close 20 Nov 2008: 80.86, the highest close to that date (Cboe VIX history); VIX on 29 Aug "
         "2008: 20.65 (CNBC, 'One Year Later: The Month that Shook the World', Sep 2009).")),
    Stress(
        "covid-2020", "COVID-19 crash", "19 Feb 2020 - 23 Mar 2020",
        "From the S&P 500's record close to its pandemic low: equities from 3,386.15 to 2,237.40, "
        "-33.92%; VIX from 14.38 to its record close of 82.69 (16 Mar 2020), +68.31 vol points; the "
        "10-year Treasury yield from 1.56% to 0.54% (9 Mar 2020), -102 bp, applied at 2 and 10 years.",
        {"equity": (2237.40 / 3386.15 - 1.0,), "equity_vol": vol_term(0.8269 - 0.1438),
         "usd_rates": (-0.0102, -0.0102)},
        ("S&P 500 closes 19 Feb 2020: 3,386.15 (record) and 23 Mar 2020: 2,237.40 (S&P Dow Jones Indices; "
         "Reuters via ABI, 19 Aug 2020: 'the previous record close of 3,386.15 on Feb 19', the low on 23 Mar).",
         "VIX closes 19 Feb 2020: 14.38; 16 Mar 2020: 82.69, the highest close since 1990 (Cboe VIX history; "
         "Sydney Morning Herald, 17 Mar 2020).",
         "10-year Treasury constant maturity yield, 19 Feb 2020: 1.56%, 9 Mar 2020: 0.54% (Federal Reserve "
         "H.15, FRED series DGS10).")),
    Stress(
        "rates-shock-2022", "2022 rates shock", "31 Dec 2021 - 30 Dec 2022",
        "The largest calendar-year rise of the 2- and 10-year Treasury yields in Dow Jones Market Data's "
        "records (from 1973 and 1977): 2-year from 0.730% to 4.399% "
        "(+366.9 bp), 10-year from 1.496% to 3.826% (+233.0 bp); equities -19.44% (S&P 500 from "
        "4,766.18 to 3,839.50). Vols not moved.",
        {"equity": (3839.50 / 4766.18 - 1.0,), "usd_rates": (0.03669, 0.02330)},
        ("2-year and 10-year Treasury yields over 2022: +3.669 and +2.330 percentage points, to 4.399% and "
         "3.826% (Tradeweb ICE U.S. Treasury closing prices, Dow Jones Market Data, 30 Dec 2022).",
         "S&P 500 closes 31 Dec 2021: 4,766.18, 30 Dec 2022: 3,839.50 (S&P Dow Jones Indices).")),
)}

#: the most named parts one scenario set may combine
MAX_PARTS = 200


@dataclass(frozen=True)
class Part:
    """A named part of a scenario set: its own shifts, sizes and labels."""

    name: str
    scenarios: ScenarioSet
    origins: tuple[str, ...]  # per shift: the request field its violations name
    path: str = ""  # the request field that names the part ("stresses[1]")


def catalogue_part(stress: Stress, targets: Mapping[str, tuple[str, ...]], target_paths: Mapping[str, str],
                   path: str) -> Optional[Part]:
    """A catalogue stress as a part: one shift per factor it moves and the run targets
    (factor -> selectors; a factor mapped to nothing is left out); None when no factor is
    left."""
    shifts, rows, origins = [], [], []
    for factor_name, sizes in stress.moves.items():
        f = FACTORS[factor_name]
        selector = targets.get(factor_name, f.selector)
        if not selector:
            continue
        shifts.append(Shift(factor_name, f.quantity, f.kind, tuple(selector), f.shape))
        rows.extend(sizes)
        origins.append(target_paths.get(factor_name, path))
    if not shifts:
        return None
    values = np.asarray(rows, dtype=np.float64).reshape(-1, 1)
    return Part(stress.name, ScenarioSet(tuple(shifts), values, (stress.name,)), tuple(origins), path)


def combine(base: Optional[ScenarioSet], parts: Sequence[Part], smile: Smile) -> ScenarioSet:
    """One set: the caller's own scenarios first (its shifts as they are), then each part's
    scenarios (its shifts renamed "<part>:<shift>", its labels "<part>" for one scenario or
    "<part>/<label>"), each scenario moving only its own shifts (zeros elsewhere)."""
    own = base.shifts if base is not None else ()
    shifts = list(own)
    origins = [f"shifts[{i}]" for i in range(len(own))]
    labels = list(base.labels) if base is not None else []
    label_paths = [f"labels[{j}]" for j in range(len(labels))]
    stress_paths = [""] * len(own)
    blocks = [(0, base.values)] if base is not None else []
    row, col = (base.components, base.scenarios) if base is not None else (0, 0)
    for p in parts:
        s = p.scenarios
        shifts.extend(Shift(f"{p.name}:{x.name}", x.quantity, x.kind, x.selector, x.shape) for x in s.shifts)
        origins.extend(p.origins)
        stress_paths.extend([p.path] * len(s.shifts))
        labels.extend([p.name] if s.scenarios == 1 else [f"{p.name}/{x}" for x in s.labels])
        label_paths.extend([p.path] * s.scenarios)
        blocks.append((row, s.values))
        row, col = row + s.components, col + s.scenarios
    values = np.zeros((row, col))
    c = 0
    for r, v in blocks:
        values[r:r + v.shape[0], c:c + v.shape[1]] = v
        c += v.shape[1]
    return ScenarioSet(tuple(shifts), values, tuple(labels), smile, tuple(origins),
                       base.sizes_path if base is not None else "sizes", tuple(label_paths),
                       stress_paths=tuple(stress_paths))


def check_targets(targets: Sequence[tuple[str, Sequence[str]]], prefix: str, bad: Violations
                  ) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """factor -> selectors, factor -> its field, from (factor, selectors) pairs."""
    out: dict[str, tuple[str, ...]] = {}
    paths: dict[str, str] = {}
    for i, (factor, selector) in enumerate(targets):
        path = f"{prefix}stress_targets[{i}]"
        if factor not in FACTORS:
            bad.add(f"{path}.factor", f"{factor!r} is no factor; the factors are {sorted(FACTORS)}")
        elif factor in out:
            bad.add(f"{path}.factor", f"{factor!r} repeats")
        else:
            out[factor] = tuple(selector)
            paths[factor] = f"stress_targets[{i}].selectors"  # (from the set's root, as origins are)
    return out, paths
