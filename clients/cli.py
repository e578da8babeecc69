"""The ``pricegrid`` command line, client side (``pricegrid serve`` belongs to the server).

    pricegrid price --model bsm --type call --strike 100 --expiry 0.5 \\
                    --spot 100 --rate 0.05 --dividend 0.01 --vol 0.2 --greeks delta,gamma,vega
    pricegrid price --type put --strike 100 --valuation-date 2025-01-02 --expiry-date 2025-07-02 \\
                    --day-count ACT/360 --spot 100 --vol 0.2
    pricegrid price --instrument barrier --barrier-type down_out --type call --strike 100 \
                    --barrier 90 --rebate 2 --expiry 1 --spot 100 --vol 0.25 --greeks delta,vega
    pricegrid price --instrument asian --averaging arithmetic --engine monte_carlo --paths 200000 \
                    --type call --strike 100 --fixing-times 0.25,0.5,0.75,1 --expiry 1 --spot 100 --vol 0.3
    pricegrid price --model heston --type put --strike 95 --expiry 0.5 --spot 100 \
                    --v0 0.04 --kappa 1.5 --theta 0.04 --sigma 0.5 --rho -0.7
    pricegrid iv --type call --strike 100 --expiry 0.5 --spot 100 --rate 0.05 --price 10.45
    pricegrid price-file trades.csv --greeks delta,vega [--output out.csv] [--json]
    pricegrid info
    pricegrid snapshot put eod.json [--force --reason "..."]; snapshot validate/list/show/delete
    pricegrid risk backtest pnl.csv [--var-column var] [--level 0.99] [--window 250] [--png chart.png]
    pricegrid risk put-history desk/var99 pnl.csv [--append]; risk backtest [today.csv] --history desk/var99
    pricegrid risk run --portfolio book.csv --scenarios stress.yaml --snapshot ID --underlying SPX
                       [--output aggregates|cube|both] [--cube-csv cube.csv] [--png pnl.png]
    pricegrid risk put-portfolio eod/equity --portfolio book.csv [--tag desk]; risk stresses
    pricegrid bench latency --count 2000 --concurrency 4 --json out.json --png out.png

Every command takes ``--target`` (default ``$PRICEGRID_TARGET`` or ``127.0.0.1:50051``) and
``--json``; output is an aligned table otherwise. A failure prints its message and the
offending field to stderr and exits 2 when the input was wrong, 1 otherwise; ``price-file``
prices the rows it can and exits 3 when some rows failed (each named by its line and trade
id on stderr and in the output).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import grpc
import numpy as np

from . import _format
from ._config import default_target
from ._errors import PricingError
from ._models import (
    DAY_COUNTS,
    ENGINES,
    INSTRUMENTS,
    MEASURES,
    MODELS,
    EngineSettings,
    EuropeanOption,
    ExpiryDates,
    HestonParameters,
    Market,
    day_count_name,
    measure_codes,
)

#: instrument name -> its dataclass
_INSTRUMENT_TYPES = {name: cls for cls, name in INSTRUMENTS.items()}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3


class _BadInput(Exception):
    """A mistake in the command's input (exit 2)."""


# ---------------------------------------------------------------------------- parser
def _greeks(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return [m for m in MEASURES if m != "price"]
    try:
        measure_codes(names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return names


def _date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _day_count(text: str) -> str:
    try:
        return day_count_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def _common(parser: argparse.ArgumentParser, *, timeout: float, json_flag: bool = True) -> None:
    parser.add_argument(
        "--target", default=None, help="server host:port (default: $PRICEGRID_TARGET or 127.0.0.1:50051)"
    )
    parser.add_argument("--timeout", type=_positive_seconds, default=timeout, help="deadline per call in seconds")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.replace(";", ",").split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


#: every instrument's own terms: (flag, type, "instruments: help"); a flag is the field's name
_TERM_FLAGS = (
    ("--barrier-type", str, "barrier: down_in, down_out, up_in, up_out"),
    ("--barrier", float, "barrier, touch: the barrier level"),
    ("--rebate", float, "barrier: rebate (default 0)"),
    ("--monitoring-interval", float, "barrier, touch: years between observations (default 0: continuous)"),
    ("--knock-type", str, "double_barrier: knock_in or knock_out"),
    ("--lower-barrier", float, "double_barrier"),
    ("--upper-barrier", float, "double_barrier"),
    ("--payoff", str, "digital: cash_or_nothing, asset_or_nothing, gap"),
    ("--cash", float, "digital, touch: amount paid (default 1)"),
    ("--payoff-strike", float, "digital gap: the strike in the payoff"),
    ("--touch-type", str, "touch: one_touch or no_touch"),
    ("--direction", str, "touch: down or up"),
    ("--payment", str, "touch: at_hit or at_expiry (default)"),
    ("--averaging", str, "asian: arithmetic or geometric"),
    ("--fixing-times", _floats, "asian: comma-separated future fixing times in years (none: continuous)"),
    ("--running-average", float, "asian: the average so far"),
    ("--past-fixings", int, "asian: fixings already taken"),
    ("--elapsed", float, "asian: years of continuous averaging done"),
    ("--strike-type", str, "lookback: floating or fixed"),
    ("--running-minimum", float, "lookback: the minimum so far (default: spot)"),
    ("--running-maximum", float, "lookback: the maximum so far (default: spot)"),
)


def _instrument_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instrument", default="european", choices=list(_INSTRUMENT_TYPES),
                        help="product (default european)")
    parser.add_argument("--engine", choices=sorted(ENGINES), help="pricing method (default: the product's)")
    g = parser.add_argument_group("instrument terms (by --instrument)")
    for flag, kind, text in _TERM_FLAGS:
        g.add_argument(flag, type=kind, help=text)
    h = parser.add_argument_group("Heston parameters (--model heston; all five, no defaults)")
    for name, text in (("v0", "initial variance"), ("kappa", "mean-reversion speed of the variance"),
                       ("theta", "long-run variance"), ("sigma", "volatility of the variance"),
                       ("rho", "correlation of the spot and variance shocks")):
        h.add_argument(f"--{name}", type=float, help=text)
    e = parser.add_argument_group("engine settings (unset: the engine's defaults, listed by pricegrid info)")
    e.add_argument("--paths", type=int, help="Monte Carlo paths")
    e.add_argument("--seed", type=int, help="Monte Carlo seed")
    e.add_argument("--max-step", type=float, help="Monte Carlo longest time step in years")
    e.add_argument("--sobol", action="store_true", default=None, help="Monte Carlo: Sobol numbers with a Brownian bridge")
    e.add_argument("--tree-steps", type=int, help="binomial tree steps")
    e.add_argument("--scheme", dest="american_scheme", choices=["fast", "accurate", "high_precision"],
                   help="American fixed-point scheme")


def _trade_arguments(parser: argparse.ArgumentParser, *, vol: bool, snapshot: bool = True) -> None:
    """``snapshot`` False: --snapshot and --underlying are not offered (implied volatility is
    not served on snapshots); still parsed, so that the command refuses them by name."""
    parser.add_argument("--model", default="bsm", choices=sorted(MODELS), help="pricing model (default bsm)")
    parser.add_argument("--type", dest="option_type", type=str.lower, choices=["call", "put", "c", "p"])
    parser.add_argument("--strike", type=float)
    expiry = parser.add_argument_group("expiry: --expiry, or --valuation-date with --expiry-date")
    expiry.add_argument("--expiry", type=float, help="time to expiry in years")
    expiry.add_argument("--valuation-date", type=_date)
    expiry.add_argument("--expiry-date", type=_date)
    expiry.add_argument("--day-count", type=_day_count, default="ACT/365F", help=f"one of {list(DAY_COUNTS)}")
    underlying = parser.add_mutually_exclusive_group(required=True)
    underlying.add_argument("--spot", type=float, help="spot (bsm)")
    underlying.add_argument("--forward", type=float, help="forward (black76, bachelier)")
    underlying.add_argument("--snapshot", help="a market snapshot's id (with --underlying): level, rates, dividends"
                                               " and, without --vol, the vol come from it (not --rate, --dividend)"
                            if snapshot else argparse.SUPPRESS)
    parser.add_argument("--underlying", help="the underlying's id in the --snapshot" if snapshot else argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help="continuously compounded rate, per 1.00 (default 0)")
    parser.add_argument("--dividend", type=float, help="dividend yield, per 1.00 (bsm; default 0)")
    if vol:
        parser.add_argument("--vol", type=float, help="volatility, per 1.00 (not with --model heston)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pricegrid")
    except PackageNotFoundError:  # run from a tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pricegrid", description="pricegrid: the pricing and risk service (serve, health) and its client (price,"
                                      " implied vol, info, snapshots, risk, bench). Each command's --help lists its"
                                      " options and defaults.")
    parser.add_argument("--version", action="version", version=f"pricegrid {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # run by the server's CLI (pricegrid.console dispatches them before this parser): listed here for --help
    commands.add_parser("serve", help="run the server (pricegrid serve --help: its settings and their"
                                      " PRICEGRID_* variables)", add_help=False)
    commands.add_parser("health", help="ask a server's gRPC health service; exit 0 when SERVING", add_help=False)

    price = commands.add_parser("price", help="price one trade and its Greeks")
    _trade_arguments(price, vol=True)
    price.add_argument("--greeks", type=_greeks, default=[], help="comma-separated: delta,gamma,vega,... or all")
    _instrument_arguments(price)
    _common(price, timeout=60.0)

    iv = commands.add_parser("iv", help="implied volatility of one trade from its price")
    _trade_arguments(iv, vol=False, snapshot=False)  # the server solves on inline markets only
    iv.add_argument("--price", type=float, required=True, help="the option's premium")
    _common(iv, timeout=5.0)

    pf = commands.add_parser("price-file", help="price a CSV of trades through the risk client")
    pf.add_argument("file", type=Path, help="CSV with a header row; columns named as RiskClient arguments")
    pf.add_argument("--model", default="bsm", choices=sorted(MODELS))
    pf.add_argument("--instrument", default="european", choices=list(_INSTRUMENT_TYPES),
                    help="product of every row (default european); its columns by their contract names")
    pf.add_argument("--engine", choices=sorted(ENGINES), help="pricing method (default: the product's)")
    pf.add_argument("--greeks", type=_greeks, default=[], help="comma-separated Greeks besides the price")
    pf.add_argument("--implied-vol", action="store_true", help="the file's 'price' column holds premiums: solve for vol")
    pf.add_argument("--valuation-date", type=_date, help="valuation date for an expiry_date column")
    pf.add_argument("--day-count", type=_day_count, help="day count for an expiry_date column")
    pf.add_argument("--output", type=Path, help="also write the results as CSV here")
    pf.add_argument("--chunk-rows", type=int, default=None)
    pf.add_argument("--max-in-flight", type=int, default=4)
    pf.add_argument("--progress", action="store_true", help="show a progress bar (needs tqdm)")
    _common(pf, timeout=60.0)

    info = commands.add_parser("info", help="the server's version, build, limits and models")
    _common(info, timeout=5.0)

    snap = commands.add_parser("snapshot", help="market snapshots held by the server: put, validate, list, show, delete")
    snap_commands = snap.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    put = snap_commands.add_parser("put", help="validate and store a snapshot from a JSON or YAML file")
    put.add_argument("file", type=Path)
    put.add_argument("--force", action="store_true", help="store despite error-level findings (needs --reason)")
    put.add_argument("--reason", default="", help="why error-level findings are accepted (stored)")
    _common(put, timeout=60.0)
    check = snap_commands.add_parser("validate", help="the quality report of a snapshot file (nothing stored)")
    check.add_argument("file", type=Path)
    _common(check, timeout=60.0)
    ls = snap_commands.add_parser("list", help="stored snapshots, newest first")
    ls.add_argument("--name", default="", help="only this name's snapshots")
    ls.add_argument("--limit", type=int, default=0)
    _common(ls, timeout=60.0)
    show = snap_commands.add_parser("show", help="one snapshot (JSON)")
    show.add_argument("id")
    _common(show, timeout=60.0, json_flag=False)
    plot = snap_commands.add_parser("plot", help="draw a snapshot's curves and a surface's smiles to a PNG")
    plot.add_argument("id")
    plot.add_argument("--png", type=Path, required=True)
    plot.add_argument("--curve", action="append", default=None, help="a curve's id (repeatable; default: all)")
    plot.add_argument("--surface", default=None, help="a surface's id (default: the first)")
    _common(plot, timeout=60.0, json_flag=False)
    rm = snap_commands.add_parser("delete", help="remove a snapshot")
    rm.add_argument("id")
    _common(rm, timeout=60.0, json_flag=False)

    risk = commands.add_parser("risk", help="risk engines' tools: scenario runs, VaR backtests")
    risk_commands = risk.add_subparsers(dest="risk_command", metavar="ACTION", required=True)
    bt = risk_commands.add_parser(
        "backtest", help="backtest a VaR model: Kupiec, Christoffersen and the Basel traffic light over a CSV",
        description="Backtest a VaR model over a CSV with a header row and one row per day, in time order: the"
                    " day's P&L (losses negative) and the VaR forecast for that day; or over a history stored on the"
                    " server (--history, see put-history), followed by the CSV's days if one is given. With --var-convention loss (the"
                    " default) VaR is a loss amount >= 0 and a day is an exception when -pnl > var; with pnl_quantile"
                    " VaR is the P&L quantile <= 0 and an exception is pnl < var.")
    bt.add_argument("file", type=Path, nargs="?",
                    help="the days (optional with --history: they follow the stored days)")
    bt.add_argument("--history", metavar="NAME",
                    help="a backtest history stored on the server (name or id; see risk put-history): its days come"
                         " first")
    _backtest_file_arguments(bt, "default loss; with --history, the history's")
    bt.add_argument("--level", type=float, default=0.99, help="the VaR's confidence level (default 0.99)")
    bt.add_argument("--window", type=int, default=250, help="days in the traffic light's window (default 250)")
    bt.add_argument("--png", type=Path, help="also draw a traffic-light chart to this PNG (needs matplotlib)")
    _common(bt, timeout=60.0)

    ph = risk_commands.add_parser(
        "put-history", help="store a P&L and VaR CSV on the server as a backtest history, or append its days",
        description="Store the days of a CSV (as risk backtest reads it) as a new version of a named backtest"
                    " history, for risk backtest --history NAME. With --append the new version is the newest one's"
                    " days followed by the file's (a risk system appends each day as it comes).")
    ph.add_argument("name")
    ph.add_argument("file", type=Path)
    _backtest_file_arguments(ph, "default loss; with --append, the stored one's")
    ph.add_argument("--append", action="store_true", help="append the file's days to the newest version")
    ph.add_argument("--base-id", default="",
                    help="append to this version only while it is the newest (implies --append; a rerun after a"
                         " lost reply appends once)")
    ph.add_argument("--description", default="", help="what the history is (with --append, default: the stored one's)")
    _common(ph, timeout=60.0)

    rr = risk_commands.add_parser(
        "run", help="revalue a portfolio under a scenario set: P&L per scenario, VaR and ES",
        description="Revalue the trades of a CSV (or a portfolio stored on the server) on a stored snapshot under"
                    " the scenarios of a YAML or JSON file. The CSV: one row per trade with the instrument's columns"
                    " (option_type, strike, time_to_expiry, barrier, ...), optional trade_id, quantity, and"
                    " instrument (default european), underlying (default --underlying) and model (default --model)"
                    " columns: rows of one instrument, underlying and model form a book, so a file may mix them."
                    " The scenarios: {labels: [...], smile: sticky_strike | sticky_moneyness, shifts: [{name,"
                    " quantity: spot | vol | zero_rate | dividend_yield | time, kind: absolute | relative | log |"
                    " fixed, selector: [id globs], sizes: one per label (or per tenor / grid node, then per label),"
                    " optional tenors: [3M, 1Y, ...] or grid_expiries + grid_moneyness}], stresses: [catalogue or"
                    " stored names], stress_targets: {factor: [id globs]}} (see risk stresses).")
    trades = rr.add_mutually_exclusive_group(required=True)
    trades.add_argument("--portfolio", type=Path, help="the trades (CSV with a header row)")
    trades.add_argument("--stored-portfolio", metavar="NAME", help="a portfolio stored on the server (name or id)")
    rr.add_argument("--scenarios", type=Path, required=True, help="the scenario set (.yaml, .yml or .json)")
    rr.add_argument("--snapshot", required=True, help="the stored snapshot's id")
    _portfolio_arguments(rr)
    rr.add_argument("--output", choices=("aggregates", "cube", "both"), default="aggregates")
    rr.add_argument("--cube-csv", type=Path, help="write the P&L cube (trades x scenarios) to this CSV")
    rr.add_argument("--var-level", type=float, action="append", help="VaR level (repeatable; default 0.99)")
    rr.add_argument("--es-level", type=float, action="append", help="ES level (repeatable; default 0.975)")
    rr.add_argument("--trade-risk", action="store_true", help="also each trade's VaR and ES")
    rr.add_argument("--aggregate-by", action="append", default=[],
                    help="a column of the portfolio CSV to aggregate by (repeatable, top level first, e.g."
                         " --aggregate-by desk --aggregate-by book): VaR and ES per node")
    rr.add_argument("--png", type=Path, help="draw the portfolio's P&L histogram with the VaR and ES lines")
    _common(rr, timeout=600.0)

    pp = risk_commands.add_parser(
        "put-portfolio", help="store a portfolio CSV on the server under a name (a new version)",
        description="Store the trades of a CSV (as risk run reads it; every tag column given with --tag) as a new"
                    " version of a named portfolio, for risk run --stored-portfolio.")
    pp.add_argument("name")
    pp.add_argument("--portfolio", type=Path, required=True, help="the trades (CSV with a header row)")
    pp.add_argument("--description", default="")
    pp.add_argument("--tag", dest="aggregate_by", action="append", default=[],
                    help="a CSV column to keep as a tag (repeatable)")
    _portfolio_arguments(pp)
    _common(pp, timeout=120.0)

    st = risk_commands.add_parser("stresses", help="the server's stress catalogue: figures, windows and sources")
    _common(st, timeout=30.0)

    # a tool beside the clients (pricegrid.tools.bench, dispatched by pricegrid.console): listed for --help
    commands.add_parser("bench", help="latency of a running server against a bare grpcio echo server"
                                      " (pricegrid bench latency --help)", add_help=False)
    _format.name_defaults(parser)
    return parser


def _portfolio_arguments(p) -> None:
    p.add_argument("--underlying", help="the underlying's id in the snapshot, for rows without an 'underlying'"
                                        " column")
    p.add_argument("--model", default="bsm", help="bsm (spot) or black76 (futures), for rows without a 'model'"
                                                  " column; default bsm")


# ---------------------------------------------------------------------------- commands
def _expiry(args):
    if args.expiry is not None:
        if args.valuation_date or args.expiry_date:
            raise _BadInput("give --expiry or --valuation-date/--expiry-date, not both")
        expiry = args.expiry
    elif args.valuation_date and args.expiry_date:
        expiry = ExpiryDates(valuation_date=args.valuation_date, expiry_date=args.expiry_date, day_count=args.day_count)
    else:
        raise _BadInput("give --expiry, or --valuation-date with --expiry-date")
    return expiry


def _option(args):
    """The instrument named by --instrument, from the flags of its terms."""
    kind = getattr(args, "instrument", "european")
    cls = _INSTRUMENT_TYPES[kind]
    terms = {"expiry": _expiry(args)}
    for name in cls.__dataclass_fields__:
        if name == "expiry":
            continue
        value = getattr(args, name, None)
        if value is not None:
            terms[name] = value
    owned = [(flag, flag[2:].replace("-", "_"), text.split(":")[0]) for flag, _, text in _TERM_FLAGS]
    owned += [("--type", "option_type", "options with a call or put"), ("--strike", "strike", "options with a strike")]
    foreign = [(flag, owners) for flag, name, owners in owned
               if getattr(args, name, None) is not None and name not in cls.__dataclass_fields__]
    if foreign:  # a term of another instrument would be dropped: say so
        said = "; ".join(f"{flag} is for {owners}" for flag, owners in foreign)
        raise _BadInput(f"{kind} options take no {', '.join(f for f, _ in foreign)} ({said}): set --instrument,"
                        " or leave them out")
    missing = [n for n, f in cls.__dataclass_fields__.items() if n not in terms and f.default is f.default_factory]
    if missing:
        flags = ", ".join("--type" if n == "option_type" else "--" + n.replace("_", "-") for n in missing)
        raise _BadInput(f"{kind} options need {flags}")
    return cls(**terms)


def _market(args, vol: float | None) -> Market:
    heston = None
    given = [getattr(args, n, None) for n in ("v0", "kappa", "theta", "sigma", "rho")]
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise _BadInput("Heston needs all of --v0, --kappa, --theta, --sigma, --rho")
        heston = HestonParameters(*given)
    if getattr(args, "snapshot", None):
        if not args.underlying:
            raise _BadInput("--snapshot needs --underlying (the underlying's id in the snapshot)")
        given = [flag for flag, name in (("--rate", "rate"), ("--dividend", "dividend")) if getattr(args, name) is not None]
        if given:  # as the server and Market() refuse them: never dropped without a word
            raise _BadInput(f"{', '.join(given)}: the rates and dividends come from the snapshot (--snapshot); give"
                            " the market inline (--spot or --forward) or by snapshot, not both")
        return Market(snapshot_id=args.snapshot, underlying_id=args.underlying, volatility=vol, heston=heston)
    if getattr(args, "underlying", None) is not None:
        raise _BadInput("--underlying names an underlying of a --snapshot; with --spot or --forward leave it out")
    return Market(spot=args.spot, forward=args.forward, rate=args.rate or 0.0, dividend_yield=args.dividend or 0.0,
                  volatility=vol, heston=heston)


def _settings(args) -> EngineSettings | None:
    names = ("paths", "seed", "max_step", "sobol", "tree_steps", "american_scheme")
    values = {n: getattr(args, n, None) for n in names}
    values = {k: v for k, v in values.items() if v is not None}
    return EngineSettings(**values) if values else None


def _cmd_price(args, out) -> int:
    from ._frontoffice import FrontOfficeClient

    option, market = _option(args), _market(args, args.vol)
    if market.volatility is None and market.heston is None and market.snapshot_id is None:
        raise _BadInput("give --vol (or the Heston parameters with --model heston)")
    with FrontOfficeClient(target=args.target or default_target(), timeout=args.timeout) as client:
        result = client.price(option, market, model=args.model, measures=args.greeks, engine=args.engine,
                              settings=_settings(args))
    greeks = result.greeks.as_dict()
    inputs = _inputs_dict(result.inputs)
    if args.json:
        _dump(
            {"price": result.price, "greeks": greeks, "inputs": inputs, "priced_by": _ref(result.priced_by),
             "standard_error": result.standard_error, "methods": dict(result.methods),
             "market": None if result.market is None else dataclasses.asdict(result.market),
             "standard_errors": dict(result.standard_errors)}, out
        )
    else:
        pairs = [("price", result.price)]
        if result.standard_error:
            pairs.append(("price std error", result.standard_error))
        for name, value in greeks.items():
            pairs.append((name, value))
            base = name.replace("_per_point", "").replace("_per_day", "")
            if name == base and result.methods.get(base, "analytic") != "analytic":  # say how, where not closed form
                se = result.standard_errors.get(base)
                pairs.append((f"  {base} by", result.methods[base] + (f" (std error {se:.3g})" if se else "")))
        pairs += [(f"{k} (used)", v) for k, v in inputs.items()]
        if result.market is not None:
            m = result.market
            pairs.append(("market", f"snapshot {m.snapshot_id}, {m.underlying_id} on {m.discount_curve}"
                                    + (f", vol from {m.vol_surface}" if m.vol_surface else "")))
        pairs.append(("priced_by", str(result.priced_by)))
        print(_format.key_values(pairs), file=out)
    return EXIT_OK


def _cmd_iv(args, out) -> int:
    from ._frontoffice import FrontOfficeClient

    if args.snapshot or args.underlying:  # as the server: market.snapshot_id is not served for implied vols
        raise _BadInput(f"{'--snapshot' if args.snapshot else '--underlying'}: implied volatility is solved on an"
                        " inline market (--spot or --forward, --rate, --dividend), not on a snapshot")
    option, market = _option(args), _market(args, None)
    if not isinstance(option, EuropeanOption):
        raise _BadInput("implied volatility is for European options")
    with FrontOfficeClient(target=args.target or default_target(), timeout=args.timeout) as client:
        result = client.implied_vol(option, market, args.price, model=args.model)
    inputs = _inputs_dict(result.inputs)
    if args.json:
        _dump({"volatility": result.volatility, "inputs": inputs, "priced_by": _ref(result.priced_by)}, out)
    else:
        pairs = [("volatility", result.volatility)] + [(f"{k} (used)", v) for k, v in inputs.items()]
        pairs.append(("priced_by", str(result.priced_by)))
        print(_format.key_values(pairs), file=out)
    return EXIT_OK


def read_trades_csv(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """A CSV with a header row -> (header, {column: array of strings})."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise _BadInput(f"cannot read {path}: {e.strerror or e}") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise _BadInput(f"{path}: needs a header row and at least one trade")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise _BadInput(f"{path}: line {i} has {len(r)} fields, the header {len(header)}")
    table = np.array(body, dtype=str)
    return header, {name: np.char.strip(table[:, j]) for j, name in enumerate(header)}


_FLOAT_COLUMNS = ("strike", "time_to_expiry", "spot", "forward", "rate", "dividend_yield", "volatility", "price")


#: the instruments' own columns a CSV may carry: float64, except these
_INT_COLUMNS = ("past_fixings",)
_ENUM_COLUMNS = ("barrier_type", "knock_type", "payoff", "touch_type", "direction", "payment", "averaging", "strike_type")
_HESTON_COLUMNS = ("v0", "kappa", "theta", "sigma", "rho")


#: the columns of a price-file CSV besides the instrument's own terms
_FILE_COLUMNS = ("time_to_expiry", "expiry_date", "valuation_date", "day_count", "spot", "forward", "rate",
                 "dividend_yield", "volatility", "price", "trade_id") + _HESTON_COLUMNS


def _check_columns(args, columns) -> None:
    """Every column of the file is read: one that is neither the instrument's nor the file's
    (a misspelled ``rebates``, another instrument's term) is refused, named."""
    instrument = getattr(args, "instrument", "european")
    terms = set(_INSTRUMENT_TYPES[instrument].__dataclass_fields__) - {"expiry", "fixing_dates"}
    unknown = [name for name in columns if name not in terms and name not in _FILE_COLUMNS]
    if unknown:
        raise _BadInput(f"unknown column(s) {', '.join(unknown)}: not read for {instrument} options (its columns:"
                        f" {', '.join(sorted(terms))}; and {', '.join(_FILE_COLUMNS)})")


def _batch_inputs(args, columns: dict[str, np.ndarray]) -> dict:
    inputs: dict = {}
    instrument = getattr(args, "instrument", "european")
    known = set(_INSTRUMENT_TYPES[instrument].__dataclass_fields__) - {"expiry", "fixing_dates"}
    heston = {}
    for name, values in columns.items():
        if name in _HESTON_COLUMNS:
            try:
                heston[name] = values.astype(np.float64)
            except ValueError as e:
                raise _BadInput(f"column {name}: {e}") from None
        elif name == "fixing_times" and instrument == "asian":
            # one schedule per row, times separated by ';' (an empty cell: continuous)
            try:
                inputs[name] = [np.array(_floats(v), dtype=np.float64) for v in values]
            except argparse.ArgumentTypeError as e:
                raise _BadInput(f"column fixing_times: {e}") from None
        elif name in known and name in _ENUM_COLUMNS:
            inputs[name] = values
        elif name in known and name in _INT_COLUMNS:
            try:
                inputs[name] = values.astype(np.int32)
            except ValueError as e:
                raise _BadInput(f"column {name}: {e}") from None
        elif name in known and name not in ("option_type",) and name not in _FLOAT_COLUMNS:
            try:
                inputs[name] = values.astype(np.float64)
            except ValueError as e:
                raise _BadInput(f"column {name}: {e}") from None
        elif name in _FLOAT_COLUMNS:
            try:
                inputs[name] = values.astype(np.float64)
            except ValueError as e:
                raise _BadInput(f"column {name}: {e}") from None
        elif name in ("option_type", "expiry_date"):
            inputs[name] = values
        elif name in ("valuation_date", "day_count"):
            distinct = sorted(set(values.tolist()) - {""})
            if len(distinct) != 1:
                raise _BadInput(f"column {name}: a file takes one value, found {len(distinct)}")
            inputs[name] = distinct[0]
    if args.valuation_date:
        inputs["valuation_date"] = args.valuation_date
    if args.day_count:
        inputs["day_count"] = args.day_count
    if heston:
        if set(heston) != set(_HESTON_COLUMNS):
            raise _BadInput(f"Heston needs all of the columns {', '.join(_HESTON_COLUMNS)}")
        inputs["heston"] = heston
    if instrument != "european" or getattr(args, "engine", None):
        inputs["instrument"] = instrument
        if getattr(args, "engine", None):
            inputs["engine"] = args.engine
    if args.implied_vol:
        if "instrument" in inputs:
            raise _BadInput("--implied-vol is for European options under the analytic engines")
        inputs.pop("volatility", None)
        if "price" not in inputs:
            raise _BadInput("--implied-vol needs a 'price' column")
    else:
        inputs.pop("price", None)
    return inputs


def _screen_rows(args, columns: dict[str, np.ndarray]) -> dict[int, str]:
    """The rows whose own cells cannot be read (an empty or non-numeric number, an unknown
    option type or enum name): row index -> the reason. The rest of the file is priced."""
    from . import _columns as C
    from ._risk import _INT_ENUMS

    instrument = getattr(args, "instrument", "european")
    known = set(_INSTRUMENT_TYPES[instrument].__dataclass_fields__) - {"expiry", "fixing_dates"}
    bad: dict[int, str] = {}
    for name, values in columns.items():
        numeric = (name in _FLOAT_COLUMNS or name in _HESTON_COLUMNS or name in _INT_COLUMNS
                   or (name in known and name not in _ENUM_COLUMNS and name not in ("option_type", "fixing_times")))
        if numeric:
            if name == "price" and not args.implied_vol:
                continue
            try:
                values.astype(np.float64)
                continue
            except ValueError:
                pass
            for i, v in enumerate(values):
                if not _is_float(v):
                    bad.setdefault(i, f"column {name}: " + ("empty" if v == "" else f"not a number: {str(v)!r}"))
        elif name == "option_type" or (name in known and name in _ENUM_COLUMNS):
            for value in np.unique(values):
                try:
                    if name == "option_type":
                        C.as_option_type_column([str(value)])
                    else:
                        C.as_enum_column(name, [str(value)], _INT_ENUMS[name])
                except (ValueError, TypeError, KeyError):
                    allowed = "call, put (or C, P)" if name == "option_type" else "see the instrument's columns"
                    for i in np.flatnonzero(values == value):
                        bad.setdefault(int(i), f"column {name}: " + (
                            "empty" if value == "" else f"unknown value {str(value)!r} ({allowed})"))
    return bad


def _cmd_price_file(args, out) -> int:
    from ._risk import RiskClient

    header, all_columns = read_trades_csv(args.file)
    _check_columns(args, all_columns)
    total = len(next(iter(all_columns.values())))
    screened = _screen_rows(args, all_columns)
    good = np.setdiff1d(np.arange(total), np.fromiter(screened, dtype=np.int64, count=len(screened)))
    columns = {k: v[good] for k, v in all_columns.items()}
    if not len(good):
        _report_rows(args, header, all_columns, screened, None, good, out)
        return EXIT_BAD_INPUT
    inputs = _batch_inputs(args, columns)
    with RiskClient(
        target=args.target or default_target(),
        timeout=args.timeout,
        chunk_rows=args.chunk_rows,
        max_in_flight=args.max_in_flight,
        progress=args.progress,
    ) as risk:
        if args.implied_vol:
            result = risk.implied_vol_batch(model=args.model, **inputs)
        else:
            result = risk.price_batch(model=args.model, measures=["price", *args.greeks], **inputs)

    return _report_rows(args, header, all_columns, screened, result, good, out)


def _report_rows(args, header, columns, screened: dict[int, str], result, good: np.ndarray, out) -> int:
    """Every row of the file in its order: the priced ones with their results, the screened
    ones with their reason; errors by line (and trade id) on stderr; exit 0 when every row
    priced, 3 when some did not, 2 when none could be read."""
    n = len(next(iter(columns.values())))
    measures = list(result.columns) if result is not None else []
    values = {m: np.full(n, np.nan) for m in measures}
    status = np.full(n, "INVALID_ARGUMENT", dtype=object)
    messages = np.full(n, "", dtype=object)
    for i, why in screened.items():
        messages[i] = why
    if result is not None:
        for m in measures:
            values[m][good] = result.columns[m]
        status[good] = result.status_names()
        messages[good] = result.messages()
    out_header = header + measures + ["status", "error"]
    ids = columns.get("trade_id")

    def rows():
        text_columns = [columns[h] for h in header]
        for i in range(n):
            yield [c[i] for c in text_columns] + [values[m][i].item() for m in measures] + [status[i], messages[i]]

    if args.output:
        try:
            with args.output.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(out_header)
                for r in rows():
                    writer.writerow([repr(v) if isinstance(v, float) else v for v in r])
        except OSError as e:
            raise _BadInput(f"cannot write {args.output}: {e.strerror or e}") from None
    failed = np.flatnonzero(status != "OK")
    errors = [{"line": int(i) + 2, "row": int(i), **({"trade_id": str(ids[i])} if ids is not None else {}),
               "code": status[i], "message": messages[i]} for i in failed]
    if args.json:
        _dump(
            {
                "rows": n,
                "priced_by": _ref(result.priced_by) if result is not None else None,
                "error_count": len(errors),
                "errors": errors,
                "results": [dict(zip(out_header, r)) for r in rows()],
            },
            out,
        )
    else:
        print(_format.table(out_header, rows()), file=out)
        print(f"\n{n} rows, {len(errors)} failed" + (f", priced by {result.priced_by}" if result is not None else ""),
              file=out)
    for e in errors:
        who = f" (trade {e['trade_id']})" if "trade_id" in e else ""
        message = e["message"] or "(beyond the errors the server described)"
        print(f"error: line {e['line']}{who}: {e['code']}: {message}", file=sys.stderr)
    if not errors:
        return EXIT_OK
    return EXIT_BAD_INPUT if len(errors) == n else EXIT_PARTIAL


def _cmd_info(args, out) -> int:
    from ._frontoffice import FrontOfficeClient

    with FrontOfficeClient(target=args.target or default_target(), timeout=args.timeout) as client:
        info = client.server_info()
    limits = {k: getattr(info.limits, k) for k in info.limits.__dataclass_fields__}
    models = [
        {
            "model": m.model,
            "ref": _ref(m.ref),
            "instruments": list(m.instruments),
            "measures": list(m.measures),
            "methods": list(m.methods),
            "engine": m.engine,
            "default_engine": m.default_engine,
            "validated_against": m.validated_against,
        }
        for m in info.models
    ]
    if args.json:
        _dump(
            {
                "target": args.target or default_target(),
                "version": info.version,
                "started_at": info.started_at,
                "kernel_threads": info.kernel_threads,
                "limits": limits,
                "build": dict(info.build),
                "versions": dict(info.versions),
                "models": models,
            },
            out,
        )
        return EXIT_OK
    pairs = [
        ("target", args.target or default_target()),
        ("version", info.version),
        ("started_at", info.started_at),
        ("kernel_threads", info.kernel_threads),
    ]
    pairs += [(f"limits.{k}", v) for k, v in limits.items()]
    for k, v in info.build.items():
        pairs.append((f"build.{k}", " ".join(v) if isinstance(v, list) else v))
    pairs += [(f"versions.{k}", v) for k, v in sorted(info.versions.items())]
    print(_format.key_values(pairs), file=out)
    if info.models:
        print(file=out)
        print(
            _format.table(
                ["instruments", "model", "engine", "priced_by", "measures", "validated against"],
                [[",".join(m.instruments), m.model, (m.engine or "") + (" (default)" if m.default_engine else ""),
                  str(m.ref), ",".join(m.measures), m.validated_against] for m in info.models],
            ),
            file=out,
        )
    return EXIT_OK


# ---------------------------------------------------------------------------- helpers
def _inputs_dict(inputs) -> dict:
    if inputs is None:
        return {}
    return {k: getattr(inputs, k) for k in ("forward", "discount_factor", "time_to_expiry", "volatility")}


def _ref(ref) -> dict:
    return {"model": ref.model, "engine": ref.engine, "version": ref.version}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _dump(obj, out) -> None:
    json.dump(_finite(obj), out, indent=2, default=_json_default)
    out.write("\n")


def _report(error: PricingError, json_out=None) -> int:
    """The error on stderr; with --json also as a JSON object on stdout (``json_out``):
    {"error": {code, message, field, violations [{field, description}], exit}}."""
    print(f"error: {error.code.name}: {error.message}", file=sys.stderr)
    for field, description in error.field_violations:
        print(f"  field: {field}" + (f": {description}" if description else ""), file=sys.stderr)
    status = EXIT_BAD_INPUT if error.bad_input else EXIT_FAILED
    if json_out is not None:
        _dump({"error": {"code": error.code.name, "message": error.message, "field": error.field or "",
                         "violations": [{"field": f, "description": d} for f, d in error.field_violations],
                         "exit": status}}, json_out)
    return status


def _snapshot_dict(info) -> dict:
    return {
        "id": info.id, "name": info.name, "as_of": info.as_of.isoformat(), "description": info.description,
        "stored_at": info.stored_at.isoformat() if info.stored_at else None, "curves": info.curves,
        "underlyings": info.underlyings, "heston": info.heston, "surfaces": info.surfaces,
        "forced_reason": info.forced_reason, "compared_with": info.compared_with,
        "findings": [vars(f) for f in info.findings], **({} if info.created is None else {"created": info.created}),
    }


def _print_findings(findings, out) -> None:
    for f in findings:
        print(f"  {f.severity:<8} {f.check:<24} {f.field:<28} {f.message}", file=out)


def _plot_snapshot(client, args, out) -> None:
    """Zero and instantaneous forward rates of the curves (0..30y); the smiles of a surface at
    each of its expiries against K/F, read through the server (its interpolation, exactly)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _BadInput("plotting needs matplotlib: pip install 'pricegrid[plot]'") from None
    _, snapshot = client.get_snapshot(args.id)
    curves = args.curve or [c["id"] for c in snapshot.get("curves", [])]
    surfaces = snapshot.get("surfaces", [])
    surface = next((x for x in surfaces if x["id"] == args.surface), None) if args.surface else \
        (surfaces[0] if surfaces else None)
    if args.surface and surface is None:
        raise _BadInput(f"no surface {args.surface!r} in snapshot {args.id}")
    fig, axes = plt.subplots(1, 2 if surface else 1, figsize=(13 if surface else 7, 4.8), squeeze=False)
    t = np.linspace(0.0, 30.0, 601)
    ax = axes[0][0]
    for curve_id in curves:
        values = client.curve(args.id, curve_id, t)
        ax.plot(t, 100 * values["zero_rates"], label=f"{curve_id} zero")
        ax.plot(t, 100 * values["forward_rates"], linestyle="--", label=f"{curve_id} forward")
    ax.set_xlabel("years")
    ax.set_ylabel("% (continuously compounded)")
    ax.set_title(f"curves of {snapshot.get('name', '')}")
    ax.legend(fontsize=8)
    if surface:
        ax = axes[0][1]
        moneyness = np.linspace(0.6, 1.4, 81)
        for expiry in surface.get("expiries", []):
            one = client.surface(args.id, surface["id"], [expiry], [1.0])  # the forward at this expiry
            strikes = moneyness * one["forwards"][0]
            smile = client.surface(args.id, surface["id"], np.full(len(strikes), expiry), strikes)
            ax.plot(moneyness, 100 * smile["vols"], label=f"T = {expiry:g}")
        ax.set_xlabel("K / F")
        ax.set_ylabel("implied vol, %")
        ax.set_title(f"{surface['id']} ({surface.get('underlying', '')})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, args.png, 110)
    print(f"wrote {args.png}", file=out)


def _save_png(fig, path: Path, dpi: int) -> None:
    """Writes ``fig`` as PNG to exactly ``path`` (matplotlib would add ".png" to a name without
    a suffix, and the CLI would report a file it did not write); a path that cannot be written
    is bad input (exit 2, one line), never a traceback."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=dpi, format="png")
    except OSError as e:
        raise _BadInput(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _cmd_snapshot(args, out) -> int:
    from ._market import MarketClient

    with MarketClient(target=args.target or default_target(), timeout=args.timeout) as client:
        action = args.snapshot_command
        if action == "put":
            info = client.put_snapshot(args.file, force=args.force, reason=args.reason)
            if args.json:
                _dump(_snapshot_dict(info), out)
            else:
                print(f"{'stored' if info.created else 'already stored'}: {info.id} ({info.name}, as of"
                      f" {info.as_of.isoformat()}; {info.errors} errors, {info.warnings} warnings)", file=out)
                _print_findings(info.findings, out)
        elif action == "validate":
            findings = client.validate(args.file)
            if args.json:
                _dump([vars(f) for f in findings], out)
            else:
                errors = sum(f.severity == "error" for f in findings)
                print(f"{len(findings)} findings, {errors} errors" + (" (PutSnapshot would refuse it)" if errors else ""),
                      file=out)
                _print_findings(findings, out)
            return EXIT_FAILED if any(f.severity == "error" for f in findings) else EXIT_OK
        elif action == "list":
            infos = client.list_snapshots(args.name, limit=args.limit)
            if args.json:
                _dump([_snapshot_dict(i) for i in infos], out)
            else:
                rows = [[i.id, i.name, i.as_of.isoformat(timespec="seconds"), str(i.curves), str(i.underlyings),
                         str(i.surfaces), str(i.errors), str(i.warnings), i.forced_reason] for i in infos]
                print(_format.table(["id", "name", "as of", "curves", "underlyings", "surfaces", "errors", "warnings",
                                     "forced"], rows), file=out)
        elif action == "show":
            info, snapshot = client.get_snapshot(args.id)
            _dump({"info": _snapshot_dict(info), "snapshot": snapshot}, out)
        elif action == "plot":
            _plot_snapshot(client, args, out)
        else:
            print(f"deleted {client.delete_snapshot(args.id)}", file=out)
    return EXIT_OK


def _backtest_file_arguments(parser, convention_default: str) -> None:
    parser.add_argument("--pnl-column", default="pnl", help="the P&L column (default pnl)")
    parser.add_argument("--var-column", default="var", help="the VaR column (default var)")
    parser.add_argument("--label-column", default=None,
                        help="a column of day labels, echoed with the exceptions (default: 'date' when the file has"
                             " one)")
    parser.add_argument("--var-convention", choices=("loss", "pnl_quantile"), default=None,
                        help=f"how VaR is signed ({convention_default})")


def _backtest_columns(args) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    header, columns = read_trades_csv(args.file)
    label_column = args.label_column or ("date" if "date" in columns else None)
    for name, flag in ((args.pnl_column, "--pnl-column"), (args.var_column, "--var-column"),
                       (label_column, "--label-column")):
        if name is not None and name not in columns:
            raise _BadInput(f"{args.file}: no column {name!r} ({flag}); the header has {header}")
    arrays = []
    for name in (args.pnl_column, args.var_column):
        text = columns[name]
        try:
            arrays.append(text.astype(np.float64))
        except ValueError:
            bad = next(i for i, v in enumerate(text) if not _is_float(v))
            raise _BadInput(f"{args.file}: column {name}, line {bad + 2}: not a number: {str(text[bad])!r}") from None
    labels = columns[label_column].tolist() if label_column else None
    return arrays[0], arrays[1], labels


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _test_row(name: str, t) -> list:
    return [name, t.statistic, t.p_value, t.degrees_of_freedom, t.status, t.note]


def _scenario_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _BadInput(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise _BadInput("YAML files need PyYAML: pip install 'pricegrid[yaml]' (or give JSON)") from None
            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except _BadInput:
        raise
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        raise _BadInput(f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {e}") from None
    if isinstance(doc, dict) and doc.get("stresses") is not None and "labels" not in doc and "shifts" not in doc:
        doc = {**doc, "labels": [], "shifts": []}
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), list) or not isinstance(doc.get("shifts"), list):
        raise _BadInput(f"{path}: expected a mapping with 'labels' (a list) and 'shifts' (a list), or 'stresses'")
    unknown = set(doc) - {"labels", "shifts", "smile", "stresses", "stress_targets"}
    if unknown:
        raise _BadInput(f"{path}: unknown keys {sorted(unknown)}")
    if not isinstance(doc.get("stresses", []), list) or not isinstance(doc.get("stress_targets", {}), dict):
        raise _BadInput(f"{path}: 'stresses' is a list of names, 'stress_targets' a mapping of factor to selectors")
    return doc


def _scenario_set(args):
    from ._scenarios import Shift

    doc = _scenario_file(args.scenarios)
    labels = [str(x) for x in doc["labels"]]
    shifts, rows = [], []
    for i, d in enumerate(doc["shifts"]):
        where = f"{args.scenarios}: shifts[{i}]"
        if not isinstance(d, dict):
            raise _BadInput(f"{where}: expected a mapping")
        unknown = set(d) - {"name", "quantity", "kind", "selector", "sizes", "tenors", "grid_expiries",
                            "grid_moneyness"}
        if unknown:
            raise _BadInput(f"{where}: unknown keys {sorted(unknown)}")
        def tenor(x):  # YAML 1.1 reads an unquoted ON as true
            return "ON" if x is True else str(x)

        shift = Shift(str(d.get("name", "")), str(d.get("quantity", "")), str(d.get("kind", "absolute")),
                      [str(x) for x in d.get("selector", [])],
                      tenors=[tenor(x) for x in d["tenors"]] if "tenors" in d else None,
                      grid_expiries=[tenor(x) for x in d["grid_expiries"]] if "grid_expiries" in d else None,
                      grid_moneyness=[float(x) for x in d["grid_moneyness"]] if "grid_moneyness" in d else None)
        try:
            sizes = np.asarray(d.get("sizes"), dtype=np.float64).reshape(shift.components, len(labels))
        except (TypeError, ValueError):
            raise _BadInput(f"{where}.sizes: {shift.components} x {len(labels)} numbers expected (components x"
                            " labels)") from None
        shifts.append(shift)
        rows.append(sizes)
    sizes = np.vstack(rows) if rows else np.zeros((0, len(labels)))
    stresses = [str(x) for x in doc.get("stresses", [])]
    targets = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
               for k, v in doc.get("stress_targets", {}).items()}
    return shifts, sizes, labels, str(doc.get("smile", "sticky_strike")), stresses, targets


#: a portfolio CSV's columns that are not an instrument's own
_PORTFOLIO_COLUMNS = ("trade_id", "quantity", "instrument", "underlying", "model")


def _portfolio_books(args, risk, snapshot_id: str = "") -> list:
    """The CSV's trades as books (RiskClient.book): one per (instrument, underlying, model)
    in order of first appearance, each with the columns its instrument takes (a cell of
    another instrument's column must be empty), quantities, trade ids and the tag columns."""
    header, columns = read_trades_csv(args.portfolio)
    rows = len(next(iter(columns.values())))
    for name in args.aggregate_by:
        if name not in columns:
            raise _BadInput(f"{args.portfolio}: no column {name!r} (a tag); the header has {header}")

    def column(name, default):
        if name not in columns:
            return np.full(rows, default, dtype=object)
        values = columns[name].astype(object)
        values[values == ""] = default
        return values

    instrument, model = column("instrument", "european"), column("model", args.model)
    underlying = column("underlying", args.underlying or "")
    if not all(underlying):
        line = int(np.flatnonzero(underlying == "")[0]) + 2
        raise _BadInput(f"{args.portfolio}: line {line}: no underlying (an 'underlying' column, or --underlying)")
    for i, x in enumerate(instrument):
        if x not in _INSTRUMENT_TYPES:
            raise _BadInput(f"{args.portfolio}: line {i + 2}: instrument {x!r}; expected one of "
                            f"{sorted(_INSTRUMENT_TYPES)}")
    keys = list(zip(instrument, underlying, model))
    books = []
    for key in dict.fromkeys(keys):
        sel = np.array([k == key for k in keys])
        kind = key[0]
        known = (set(_INSTRUMENT_TYPES[kind].__dataclass_fields__) - {"expiry", "fixing_dates"}) | {"time_to_expiry"}
        inputs = {}
        for name, values in columns.items():
            if name in _PORTFOLIO_COLUMNS or name in args.aggregate_by:
                continue
            mine = values[sel]
            filled = mine != ""
            if name not in known:
                if filled.any():
                    line = int(np.flatnonzero(sel)[np.argmax(filled)]) + 2
                    raise _BadInput(f"{args.portfolio}: line {line}: column {name!r} is not an input of {kind} options"
                                    f" (they take {sorted(known)})")
                continue
            if not filled.any():
                continue
            if not filled.all():
                line = int(np.flatnonzero(sel)[np.argmin(filled)]) + 2
                raise _BadInput(f"{args.portfolio}: line {line}: column {name!r} is empty")
            if name in _ENUM_COLUMNS or name == "option_type":
                inputs[name] = mine
            elif name == "fixing_times":
                try:
                    inputs[name] = [np.array(_floats(v), dtype=np.float64) for v in mine]
                except argparse.ArgumentTypeError as e:
                    raise _BadInput(f"{args.portfolio}: column fixing_times: {e}") from None
            else:
                try:
                    inputs[name] = mine.astype(np.int32 if name in _INT_COLUMNS else np.float64)
                except ValueError:
                    bad = next(j for j, v in enumerate(mine) if not _is_float(v))
                    line = int(np.flatnonzero(sel)[bad]) + 2
                    raise _BadInput(f"{args.portfolio}: column {name}, line {line}: not a number: {str(mine[bad])!r}"
                                    ) from None
        quantity = None
        if "quantity" in columns:
            try:
                quantity = columns["quantity"][sel].astype(np.float64)
            except ValueError:
                raise _BadInput(f"{args.portfolio}: column quantity: not a number in a row of {kind} on {key[1]}") \
                    from None
        trade_ids = columns["trade_id"][sel].tolist() if "trade_id" in columns else None
        tags = {name: columns[name][sel].tolist() for name in args.aggregate_by}
        try:
            books.append(risk.book(kind, model=key[2], underlying_id=key[1], snapshot_id=snapshot_id,
                                   quantity=quantity, trade_ids=trade_ids, tags=tags, **inputs))
        except (ValueError, TypeError) as e:
            raise _BadInput(f"{args.portfolio}: {kind} on {key[1]}: {e}") from None
    return books


def _cmd_risk_run(args, out) -> int:
    from ._risk import RiskClient

    if args.png and args.output == "cube":
        raise _BadInput("--png draws the portfolio's P&L: use --output aggregates or both")
    shifts, sizes, labels, smile, stresses, targets = _scenario_set(args)
    output = "both" if args.cube_csv and args.output == "aggregates" else args.output
    with RiskClient(target=args.target or default_target(), timeout=args.timeout) as risk:
        trades = {"books": _portfolio_books(args, risk)} if args.portfolio else {"portfolio": args.stored_portfolio}
        try:
            result = risk.scenario_risk(
                **trades, snapshot_id=args.snapshot, shifts=shifts, sizes=sizes if shifts or labels else None,
                labels=labels, smile=smile, output=output, var_levels=tuple(args.var_level or ()),
                es_levels=tuple(args.es_level or ()), trade_risk=args.trade_risk,
                aggregate_by=args.aggregate_by, stresses=stresses, stress_targets=targets)
        except ValueError as e:
            raise _BadInput(str(e)) from None
    if args.cube_csv:
        try:
            with args.cube_csv.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["trade_id", *result.scenario_labels])
                for tid, row in zip(result.trade_ids, result.cube):
                    w.writerow([tid, *(repr(float(x)) for x in row)])
        except OSError as e:
            raise _BadInput(f"cannot write {args.cube_csv}: {e.strerror or e}") from None
    if args.png:
        _plot_pnl(result, args.png, sys.stderr if args.json else out)
    if args.json:
        doc = {"trades": len(result.trade_ids), "scenarios": len(result.scenario_labels),
               "var": {str(k): v for k, v in result.var.items()},
               "expected_shortfall": {str(k): v for k, v in result.expected_shortfall.items()},
               "portfolio_pnl": None if result.portfolio_pnl is None else dict(
                   zip(result.scenario_labels, result.portfolio_pnl.tolist())),
               "failed_cells": result.failed_cells, "errors": [dataclasses.asdict(e) for e in result.errors[:100]],
               "base_total": float(np.nansum(result.base)), "priced_by": result.priced_by, "market": result.market,
               "books": [dataclasses.asdict(b) for b in result.books], "portfolio_id": result.portfolio_id,
               "compute_seconds": result.compute_seconds}
        if result.nodes:
            doc["nodes"] = [{"path": list(n.path), "trades": n.trades,
                             "var": {str(k): v for k, v in n.var.items()},
                             "expected_shortfall": {str(k): v for k, v in n.expected_shortfall.items()}}
                            for n in result.nodes]
        if result.trade_var is not None:
            doc["trade_var"] = dict(zip(result.trade_ids, result.trade_var.tolist()))
            doc["trade_expected_shortfall"] = dict(zip(result.trade_ids, result.trade_expected_shortfall.tolist()))
        _dump(doc, out)
        return EXIT_OK
    pairs = [("trades", len(result.trade_ids)), ("scenarios", len(result.scenario_labels)),
             ("snapshot", result.market["snapshot_id"])]
    pairs += [(f"book {i}" if len(result.books) > 1 else "book",
               f"{b.trade_stop - b.trade_start} {b.product} on {b.market['underlying_id']} (surface "
               f"{b.market['vol_surface'] or '-'}), {b.priced_by['model']} / {b.priced_by['engine']} "
               f"{b.priced_by['version']}") for i, b in enumerate(result.books)]
    pairs += [("portfolio", result.portfolio_id)] if result.portfolio_id else []
    pairs += [("base value", f"{np.nansum(result.base):.6g}"), ("failed cells", result.failed_cells)]
    pairs += [(f"VaR {k:g}", f"{v:.6g}") for k, v in result.var.items()]
    pairs += [(f"ES {k:g}", f"{v:.6g}") for k, v in result.expected_shortfall.items()]
    print(_format.key_values(pairs), file=out)
    if result.nodes:
        var_levels, es_levels = list(result.var), list(result.expected_shortfall)
        print("\nby " + " > ".join(args.aggregate_by) + ":", file=out)
        print(_format.table(["node", "trades", *(f"VaR {k:g}" for k in var_levels), *(f"ES {k:g}" for k in es_levels)],
                            [["  " * (len(n.path) - 1) + n.path[-1], n.trades, *(n.var[k] for k in var_levels),
                              *(n.expected_shortfall[k] for k in es_levels)] for n in result.nodes]), file=out)
    if result.portfolio_pnl is not None:
        worst = np.argsort(result.portfolio_pnl)[:10]
        print("\nworst scenarios:", file=out)
        print(_format.table(["scenario", "P&L"], [[result.scenario_labels[j], result.portfolio_pnl[j]] for j in worst]),
              file=out)
    return EXIT_OK


def _plot_pnl(result, path: Path, out) -> None:
    """The portfolio's P&L per scenario as a histogram, with -VaR and -ES marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _BadInput("plotting needs matplotlib: pip install 'pricegrid[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(result.portfolio_pnl, bins=min(100, max(10, len(result.portfolio_pnl) // 10)), color="#4c72b0")
    for k, v in result.var.items():
        ax.axvline(-v, color="#d62728", label=f"VaR {k:g}: {v:.4g}")
    for k, v in result.expected_shortfall.items():
        ax.axvline(-v, color="#8c1c13", linestyle="--", label=f"ES {k:g}: {v:.4g}")
    ax.set_xlabel("portfolio P&L")
    ax.set_ylabel("scenarios")
    ax.set_title(f"{len(result.trade_ids)} trades under {len(result.scenario_labels)} scenarios")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, path, 100)
    print(f"wrote {path}", file=out)


def _cmd_risk_put_portfolio(args, out) -> int:
    from ._risk import RiskClient

    with RiskClient(target=args.target or default_target(), timeout=args.timeout) as risk:
        stored = risk.put_portfolio(args.name, _portfolio_books(args, risk), description=args.description)
    if args.json:
        _dump(dataclasses.asdict(stored), out)
        return EXIT_OK
    print(_format.key_values([("id", stored.id), ("name", stored.name), ("books", stored.books),
                              ("trades", stored.trades), ("stored at", stored.stored_at),
                              ("new version", "yes" if stored.created else "no (already stored)")]), file=out)
    return EXIT_OK


def _cmd_risk_stresses(args, out) -> int:
    from google.protobuf import json_format

    from ._risk import RiskClient

    with RiskClient(target=args.target or default_target(), timeout=args.timeout) as risk:
        catalogue = risk.stresses()
    if args.json:
        _dump(json_format.MessageToDict(catalogue, preserving_proto_field_name=True), out)
        return EXIT_OK
    for s in catalogue.stresses:
        moves = ", ".join(f"{m.factor} {' '.join(f'{x:+.4g}' for x in m.sizes)}" for m in s.moves)
        print(f"{s.name}: {s.title} ({s.window})\n  {s.description}\n  moves: {moves}", file=out)
        for src in s.sources:
            print(f"  source: {src}", file=out)
    print("\nfactors:", file=out)
    print(_format.table(["factor", "tenors", "default selectors", "what"],
                        [[f.name, " ".join(f.tenors) or "-", " ".join(f.default_selectors), f.description]
                         for f in catalogue.factors]), file=out)
    return EXIT_OK


def _cmd_risk(args, out) -> int:
    if args.risk_command == "run":
        return _cmd_risk_run(args, out)
    if args.risk_command == "put-portfolio":
        return _cmd_risk_put_portfolio(args, out)
    if args.risk_command == "stresses":
        return _cmd_risk_stresses(args, out)
    if args.risk_command == "put-history":
        return _cmd_risk_put_history(args, out)
    from ._risk import RiskClient

    if args.file is None and not args.history:
        raise _BadInput("nothing to backtest: give a CSV, --history NAME, or both")
    pnl, var, labels = _backtest_columns(args) if args.file is not None else (None, None, None)
    shown = pnl, var, labels
    with RiskClient(target=args.target or default_target(), timeout=args.timeout) as risk:
        history = args.history or ""
        if history and args.png:  # the chart shows the stored days too: read them, and backtest that version
            stored = risk.get_backtest_history(history)
            history = stored.id
            shown = _after_stored(stored, pnl, var, labels)
        result = risk.backtest(pnl, var, history=history, level=args.level, window=args.window, labels=labels,
                               var_convention=args.var_convention)
    if args.png:
        _plot_backtest(*shown, result, args.png, sys.stderr if args.json else out)
    if args.json:
        _dump(dataclasses.asdict(result), out)
        return EXIT_OK
    light = result.traffic_light
    pairs = [
        ("observations", result.observations),
        ("exceptions", f"{result.exceptions} (expected {result.expected_exceptions:.4g} at level {result.level:g})"),
        ("traffic light", f"{(light.zone or 'none').upper()}: {light.window_exceptions} exceptions in the latest"
                          f" {light.window_observations} days (window {result.window}); yellow from"
                          f" {light.yellow_from}, red from {light.red_from}; P(X <= {light.window_exceptions})"
                          f" = {light.cumulative_probability:.4%}"),
        ("transitions", "n00 {0.n00}, n01 {0.n01}, n10 {0.n10}, n11 {0.n11}".format(result.transitions)),
    ]
    print(_format.key_values(pairs), file=out)
    print(file=out)
    print(_format.table(["test", "LR", "p-value", "dof", "status", "note"],
                        [_test_row("Kupiec POF", result.kupiec_pof),
                         _test_row("Christoffersen independence", result.christoffersen_independence),
                         _test_row("conditional coverage", result.conditional_coverage)], precision=6), file=out)
    if result.newest_exceptions:
        shown = result.newest_exceptions
        print(f"\n{'the newest ' if len(shown) < result.exceptions else ''}{len(shown)} exceptions:", file=out)
        print(_format.table(["index", "label", "pnl", "var"], [[e.index, e.label, e.pnl, e.var] for e in shown]),
              file=out)
    return EXIT_OK


def _after_stored(stored, pnl, var, labels):
    """A stored history's days followed by a file's (None: none); labels "" where a side has none."""
    if pnl is None:
        return stored.pnl, stored.var, stored.labels
    joined = None
    if stored.labels is not None or labels is not None:
        joined = (stored.labels or [""] * stored.observations) + (labels or [""] * len(pnl))
    return np.concatenate([stored.pnl, pnl]), np.concatenate([stored.var, var]), joined


def _cmd_risk_put_history(args, out) -> int:
    from ._risk import RiskClient

    pnl, var, labels = _backtest_columns(args)
    with RiskClient(target=args.target or default_target(), timeout=args.timeout) as risk:
        stored = risk.put_backtest_history(args.name, pnl, var, labels, var_convention=args.var_convention,
                                           append=args.append, base_id=args.base_id, description=args.description)
    if args.json:
        _dump(dataclasses.asdict(stored), out)
        return EXIT_OK
    print(_format.key_values([("id", stored.id), ("name", stored.name), ("observations", stored.observations),
                              ("exceptions", stored.exceptions), ("var convention", stored.var_convention),
                              ("stored at", stored.stored_at),
                              ("new version", "yes" if stored.created else "no (already stored)")]), file=out)
    return EXIT_OK


#: the traffic light's colours
_ZONE_COLOURS = {"green": "#2e9e44", "yellow": "#e0b000", "red": "#d62728", None: "#999999"}


def _plot_backtest(pnl, var, labels, result, path: Path, out) -> None:
    """P&L bars, the VaR as a loss line (-VaR), exceptions in red, and the latest window
    shaded in its traffic light's colour."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _BadInput("plotting needs matplotlib: pip install 'pricegrid[plot]'") from None
    loss_line = -var if result.var_convention == "loss" else var  # where the P&L turns into an exception
    exception = pnl < loss_line  # the contract's rule (-pnl > var, or pnl < var)
    if int(exception.sum()) != result.exceptions:  # pragma: no cover - the server counts the same days
        raise RuntimeError(f"the chart finds {int(exception.sum())} exceptions, the server {result.exceptions}")
    n = len(pnl)
    x = np.arange(n)
    light = result.traffic_light
    colour = _ZONE_COLOURS.get(light.zone, "#999999")
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.axvspan(n - light.window_observations - 0.5, n - 0.5, color=colour, alpha=0.12, lw=0,
               label=f"latest window ({light.window_observations} days): {(light.zone or 'none').upper()}")
    ax.bar(x[~exception], pnl[~exception], width=1.0, color="#7f9fbf", label="P&L")
    ax.bar(x[exception], pnl[exception], width=1.0, color="#d62728", label=f"exceptions ({result.exceptions})")
    ax.scatter(x[exception], pnl[exception], s=14, color="#d62728", zorder=3)
    ax.plot(x, loss_line, color="black", lw=1.0, label=f"-VaR ({result.level:.4g})")
    ax.axhline(0.0, color="#555555", lw=0.5)
    if labels is not None and n:
        ticks = np.unique(np.linspace(0, n - 1, min(n, 8)).astype(int))
        ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=20, ha="right", fontsize=8)
    else:
        ax.set_xlabel("day")
    ax.set_ylabel("P&L")
    ax.set_title(f"VaR backtest: {result.exceptions} exceptions in {result.observations} days"
                 f" (expected {result.expected_exceptions:.3g}); Kupiec p = {_p(result.kupiec_pof)},"
                 f" Christoffersen cc p = {_p(result.conditional_coverage)}", fontsize=10)
    ax.text(0.01, 0.97, f"{(light.zone or 'no data').upper()}: {light.window_exceptions} in {light.window_observations}"
                        f" (yellow from {light.yellow_from}, red from {light.red_from})",
            transform=ax.transAxes, va="top", fontsize=10, color="white", fontweight="bold",
            bbox={"facecolor": colour, "edgecolor": "none", "boxstyle": "round,pad=0.3"})
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14 if labels is not None else -0.1), ncol=4,
              frameon=False)
    fig.tight_layout()
    _save_png(fig, path, 110)
    print(f"wrote {path}", file=out)


def _p(test) -> str:
    return "undefined" if test.p_value is None else f"{test.p_value:.3g}"


COMMANDS = {"price": _cmd_price, "iv": _cmd_iv, "price-file": _cmd_price_file, "info": _cmd_info,
            "snapshot": _cmd_snapshot, "risk": _cmd_risk}


_ELSEWHERE = {"serve": "the server package (pricegrid.server)", "health": "the server package (pricegrid.server)",
              "bench": "pricegrid.tools.bench"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in _ELSEWHERE:
        print(f"error: 'pricegrid {argv[0]}' is provided by {_ELSEWHERE[argv[0]]} (the pricegrid command dispatches it)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help exits 0, a usage error 2
        return int(e.code or 0)
    out = sys.stdout
    try:
        return COMMANDS[args.command](args, out)
    except PricingError as e:
        return _report(e, out if getattr(args, "json", False) else None)
    except (_BadInput, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if getattr(args, "json", False):
            _dump({"error": {"code": "INVALID_ARGUMENT", "message": str(e), "field": "", "violations": [],
                             "exit": EXIT_BAD_INPUT}}, out)
        return EXIT_BAD_INPUT
    except grpc.RpcError as e:  # pragma: no cover - clients raise PricingError
        return _report(PricingError.from_rpc_error(e), out if getattr(args, "json", False) else None)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`pricegrid info | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
