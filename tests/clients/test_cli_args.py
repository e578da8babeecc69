"""The CLI's parsing and its input checks, before any call is made."""

import datetime as dt

import numpy as np
import pytest

from pricegrid.clients import EuropeanOption, ExpiryDates, Market, _format, cli


def parse(*argv):
    return cli.build_parser().parse_args(list(argv))


def test_price_arguments():
    args = parse(
        "price", "--model", "bsm", "--type", "call", "--strike", "100", "--expiry", "0.5", "--spot", "100",
        "--rate", "0.05", "--dividend", "0.01", "--vol", "0.2", "--greeks", "delta,gamma", "--json",
    )
    assert cli._option(args) == EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
    assert cli._market(args, args.vol) == Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)
    assert args.greeks == ["delta", "gamma"] and args.json and args.target is None


def test_price_with_dates_and_forward():
    args = parse(
        "price", "--model", "black76", "--type", "P", "--strike", "80", "--valuation-date", "2025-01-02",
        "--expiry-date", "2025-07-02", "--day-count", "act/360", "--forward", "82", "--vol", "0.4",
        "--greeks", "all",
    )
    assert cli._option(args) == EuropeanOption(
        option_type="put",
        strike=80.0,
        expiry=ExpiryDates(valuation_date=dt.date(2025, 1, 2), expiry_date=dt.date(2025, 7, 2), day_count="ACT/360"),
    )
    assert cli._market(args, args.vol).forward == 82.0
    assert "charm" in args.greeks and "price" not in args.greeks


@pytest.mark.parametrize(
    "argv",
    [
        ["price", "--type", "call", "--strike", "100", "--expiry", "0.5", "--vol", "0.2"],  # no underlying
        ["price", "--type", "call", "--strike", "100", "--expiry", "0.5", "--spot", "1", "--forward", "1", "--vol", "0.2"],
        ["price", "--type", "call", "--strike", "100", "--expiry", "0.5", "--spot", "1"],  # no vol
        ["price", "--type", "call", "--strike", "x", "--expiry", "0.5", "--spot", "1", "--vol", "0.2"],
        ["price", "--type", "call", "--strike", "1", "--expiry", "0.5", "--spot", "1", "--vol", "0.2", "--greeks", "speed"],
        ["price", "--model", "sabr", "--type", "call", "--strike", "1", "--expiry", "0.5", "--spot", "1", "--vol", "0.2"],
        # an instrument without its terms, a half-given Heston set, an unknown enum name
        ["price", "--instrument", "barrier", "--type", "call", "--strike", "1", "--expiry", "0.5", "--spot", "1", "--vol", "0.2"],
        ["price", "--model", "heston", "--type", "call", "--strike", "1", "--expiry", "0.5", "--spot", "1", "--v0", "0.04"],
        ["price", "--instrument", "barrier", "--barrier-type", "sideways", "--barrier", "90", "--type", "call",
         "--strike", "1", "--expiry", "0.5", "--spot", "1", "--vol", "0.2"],
        ["price", "--model", "heston", "--type", "call", "--strike", "1", "--expiry", "0.5", "--spot", "1"],  # no params
        ["price", "--type", "call", "--strike", "1", "--valuation-date", "2025-13-01", "--expiry-date", "2026-01-01", "--spot", "1", "--vol", "0.2"],
        ["iv", "--type", "call", "--strike", "100", "--expiry", "0.5", "--spot", "100"],  # no price
        ["bench", "latency"],  # a tool's command, dispatched by pricegrid.console
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--expiry", "0.5", "--valuation-date", "2025-01-02", "--expiry-date", "2025-06-01"], "not both"),
        (["--valuation-date", "2025-01-02"], "--expiry, or --valuation-date"),
        ([], "--expiry, or --valuation-date"),
    ],
)
def test_expiry_must_be_one_form(extra, message, capsys):
    argv = ["price", "--type", "call", "--strike", "100", "--spot", "100", "--vol", "0.2", "--target", "127.0.0.1:9"]
    assert cli.main(argv + extra) == 2
    assert message in capsys.readouterr().err


def test_serve_belongs_to_the_server(capsys):
    assert cli.main(["serve"]) == 2
    assert "server" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "price-file" in capsys.readouterr().out


def test_read_trades_csv(tmp_path):
    path = tmp_path / "trades.csv"
    path.write_text("trade_id,option_type,strike,time_to_expiry,spot,volatility\nT1,call,100,0.5,100,0.2\n\nT2, put ,95,1,100,0.25\n")
    header, columns = cli.read_trades_csv(path)
    assert header == ["trade_id", "option_type", "strike", "time_to_expiry", "spot", "volatility"]
    assert columns["option_type"].tolist() == ["call", "put"]
    args = parse("price-file", str(path))
    inputs = cli._batch_inputs(args, columns)
    assert set(inputs) == {"option_type", "strike", "time_to_expiry", "spot", "volatility"}
    np.testing.assert_array_equal(inputs["strike"], [100.0, 95.0])


def test_price_file_input_errors_exit_2(tmp_path, capsys):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("strike,spot\n1,2\n3\n")
    assert cli.main(["price-file", str(ragged)]) == 2
    assert "line 3" in capsys.readouterr().err
    assert cli.main(["price-file", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("option_type,strike,time_to_expiry,spot,volatility\ncall,abc,0.5,100,0.2\n")
    assert cli.main(["price-file", str(bad), "--target", "127.0.0.1:9"]) == 2
    assert "column strike" in capsys.readouterr().err
    two_dates = tmp_path / "dates.csv"
    two_dates.write_text("option_type,strike,expiry_date,valuation_date,spot,volatility\ncall,1,2026-01-01,2025-01-01,1,0.2\ncall,1,2026-01-01,2025-01-02,1,0.2\n")
    assert cli.main(["price-file", str(two_dates), "--target", "127.0.0.1:9"]) == 2
    assert "valuation_date" in capsys.readouterr().err


def test_tables_align():
    text = _format.table(["name", "value"], [["price", 10.4505835722], ["delta", 0.6368]])
    lines = text.splitlines()
    assert lines[0].startswith("name ") and set(lines[1]) <= {"-", " "}
    assert lines[2].endswith("10.45058357") and lines[3].endswith("0.6368")
    assert len(lines[2]) == len(lines[3])
    kv = _format.key_values([("price", 1.5), ("discount_factor", 0.97)])
    assert kv.splitlines()[0] == "price            1.5"
