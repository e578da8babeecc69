"""The CLI against a real server, through main(argv) and through the console script's
dispatcher (pricegrid.server.app.cli.main)."""

import csv
import json

import pytest

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, cli
import pricegrid.console as console


def without_server_logs(text: str) -> str:
    """Drop the in-process server's own log records (single-line JSON with an "event"),
    which its threads may print while a command's output is being captured."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not (line.startswith("{") and '"event":' in line))


def output(capsys) -> str:
    """What the command printed on stdout."""
    return without_server_logs(capsys.readouterr().out)


@pytest.fixture(scope="module")
def front(server):
    with FrontOfficeClient(target=server.address, timeout=5.0) as f:
        yield f


PRICE = ["--model", "bsm", "--type", "call", "--strike", "100", "--expiry", "0.5", "--spot", "100",
         "--rate", "0.05", "--dividend", "0.01", "--vol", "0.2"]


def test_price_table(server, front, capsys):
    assert cli.main(["price", *PRICE, "--greeks", "delta,gamma", "--target", server.address]) == 0
    out = output(capsys)
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip() and not line.startswith(("forward", "discount", "time", "volatility")))
    expected = front.price(EuropeanOption(option_type="call", strike=100, expiry=0.5),
                           Market(spot=100, rate=0.05, dividend_yield=0.01, volatility=0.2), measures=("delta", "gamma"))
    assert float(rows["price"]) == pytest.approx(expected.price, rel=1e-9)
    assert float(rows["delta"]) == pytest.approx(expected.greeks.delta, rel=1e-9)
    assert "gamma" in rows and "vega" not in rows and "black_scholes_merton" in rows["priced_by"]


def test_price_json_through_the_console_script(server, front, capsys, monkeypatch):
    monkeypatch.setenv("PRICEGRID_TARGET", server.address)  # no --target: the environment's
    assert console.main(["price", *PRICE, "--greeks", "vega,theta", "--json"]) == 0
    doc = json.loads(output(capsys))
    expected = front.price(EuropeanOption(option_type="call", strike=100, expiry=0.5),
                           Market(spot=100, rate=0.05, dividend_yield=0.01, volatility=0.2), measures=("vega", "theta"))
    assert doc["price"] == expected.price
    assert doc["greeks"] == {"vega": expected.greeks.vega, "theta": expected.greeks.theta,
                             "vega_per_point": expected.greeks.vega_per_point, "theta_per_day": expected.greeks.theta_per_day}
    assert doc["inputs"]["time_to_expiry"] == 0.5 and doc["priced_by"]["model"] == "black_scholes_merton"


def test_price_with_dates(server, capsys):
    argv = ["price", "--type", "put", "--strike", "95", "--valuation-date", "2025-01-02", "--expiry-date", "2025-07-02",
            "--day-count", "ACT/360", "--spot", "100", "--vol", "0.2", "--json", "--target", server.address]
    assert cli.main(argv) == 0
    assert json.loads(output(capsys))["inputs"]["time_to_expiry"] == pytest.approx(181 / 360)


def test_iv(server, front, capsys):
    price = front.price(EuropeanOption(option_type="call", strike=100, expiry=0.5),
                        Market(spot=100, rate=0.05, dividend_yield=0.01, volatility=0.2)).price
    argv = ["iv", *PRICE[:-2], "--price", repr(price), "--target", server.address, "--json"]
    assert cli.main(argv) == 0
    assert json.loads(output(capsys))["volatility"] == pytest.approx(0.2, rel=1e-10)
    assert cli.main(["iv", *PRICE[:-2], "--price", repr(price), "--target", server.address]) == 0
    assert output(capsys).startswith("volatility")


def test_bad_input_prints_the_field_and_exits_2(server, capsys):
    argv = ["price", "--type", "call", "--strike", "-5", "--expiry", "0.5", "--spot", "100", "--vol", "0.2",
            "--target", server.address]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "field: european.strike" in err
    # with --json the error is a JSON object on stdout too
    assert cli.main([*argv, "--json"]) == 2
    doc = json.loads(without_server_logs(capsys.readouterr().out))
    assert doc["error"]["code"] == "INVALID_ARGUMENT" and doc["error"]["field"] == "european.strike"
    assert doc["error"]["violations"][0]["field"] == "european.strike" and doc["error"]["exit"] == 2


def test_unreachable_server_exits_1(capsys):
    assert cli.main(["info", "--target", "127.0.0.1:1", "--timeout", "2"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert cli.main(["info", "--target", "127.0.0.1:1", "--timeout", "2", "--json"]) == 1
    doc = json.loads(without_server_logs(capsys.readouterr().out))  # (a late line of an earlier test's call)
    assert doc["error"]["code"] == "UNAVAILABLE" and doc["error"]["exit"] == 1


def test_info(server, capsys):
    assert cli.main(["info", "--target", server.address]) == 0
    out = output(capsys)
    assert "limits.max_rows" in out and "kernel_threads" in out and "black_scholes_merton" in out
    assert cli.main(["info", "--target", server.address, "--json"]) == 0
    doc = json.loads(output(capsys))
    assert doc["limits"]["max_rows"] > 0 and {m["model"] for m in doc["models"]} >= {"bsm", "black76", "bachelier"}


TRADES = """trade_id,option_type,strike,time_to_expiry,spot,rate,dividend_yield,volatility
T1,call,100,0.5,100,0.05,0.01,0.2
T2,put,95,1.0,100,0.05,0.01,0.25
T3,C,110,0.25,100,0.05,0.01,0.3
"""


def test_price_file_table_json_and_output(server, front, tmp_path, capsys):
    trades = tmp_path / "trades.csv"
    trades.write_text(TRADES)
    out_csv = tmp_path / "out.csv"
    argv = ["price-file", str(trades), "--greeks", "delta", "--output", str(out_csv), "--target", server.address, "--chunk-rows", "2"]
    assert cli.main(argv) == 0
    table = output(capsys).splitlines()
    assert table[0].split() == ["trade_id", "option_type", "strike", "time_to_expiry", "spot", "rate",
                                "dividend_yield", "volatility", "price", "delta", "status", "error"]
    assert [line.split()[0] for line in table[2:5]] == ["T1", "T2", "T3"]
    assert "3 rows, 0 failed" in table[-1]
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    expected = front.price(EuropeanOption(option_type="put", strike=95, expiry=1.0),
                           Market(spot=100, rate=0.05, dividend_yield=0.01, volatility=0.25), measures=("delta",))
    assert rows[1]["trade_id"] == "T2" and float(rows[1]["price"]) == expected.price  # full precision
    assert float(rows[1]["delta"]) == expected.greeks.delta and rows[1]["status"] == "OK"

    assert cli.main(["price-file", str(trades), "--json", "--target", server.address]) == 0
    doc = json.loads(output(capsys))
    assert doc["rows"] == 3 and doc["error_count"] == 0
    assert [r["trade_id"] for r in doc["results"]] == ["T1", "T2", "T3"]
    assert doc["results"][1]["price"] == expected.price


def test_price_file_with_bad_rows_and_dates(server, tmp_path, capsys):
    trades = tmp_path / "dated.csv"
    trades.write_text(
        "option_type,strike,expiry_date,spot,volatility\n"
        "call,100,2026-01-02,100,0.2\n"
        "put,-1,2026-01-02,100,0.2\n"
        "put,100,2027-01-02,100,0.2\n"
    )
    argv = ["price-file", str(trades), "--valuation-date", "2025-01-02", "--day-count", "ACT/365F",
            "--target", server.address, "--json"]
    assert cli.main(argv) == 3  # some rows failed, the others priced
    captured = capsys.readouterr()
    doc = json.loads(without_server_logs(captured.out))
    assert doc["error_count"] == 1 and doc["errors"][0]["row"] == 1 and doc["errors"][0]["line"] == 3
    assert doc["errors"][0]["message"].startswith("european.strike: ")
    assert doc["results"][1]["price"] is None and doc["results"][1]["status"] == "INVALID_ARGUMENT"
    assert doc["results"][0]["price"] > 0
    assert "line 3: INVALID_ARGUMENT: european.strike" in captured.err


def test_price_file_prices_the_rows_it_can_read_and_names_the_others(server, tmp_path, capsys):
    trades = tmp_path / "gaps.csv"
    trades.write_text(
        "trade_id,option_type,strike,time_to_expiry,spot,rate,volatility\n"
        "A,call,100,0.5,100,0.03,0.2\n"
        "B,put,,0.5,100,0.03,0.2\n"
        "C,put,90,1.0,100,0.03,abc\n"
        "D,straddle,90,1.0,100,0.03,0.2\n"
        "E,put,95,1.0,100,0.03,0.2\n"
    )
    assert cli.main(["price-file", str(trades), "--target", server.address, "--json"]) == 3
    captured = capsys.readouterr()
    doc = json.loads(without_server_logs(captured.out))
    assert [r["status"] for r in doc["results"]] == ["OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                                                     "OK"]
    assert doc["results"][0]["price"] > 0 and doc["results"][4]["price"] > 0
    errors = {e["trade_id"]: (e["line"], e["message"]) for e in doc["errors"]}
    assert errors["B"] == (3, "column strike: empty")
    assert errors["C"] == (4, "column volatility: not a number: 'abc'")
    assert errors["D"][0] == 5 and errors["D"][1].startswith("column option_type: ")
    assert "line 3 (trade B): INVALID_ARGUMENT: column strike: empty" in captured.err
    assert "Traceback" not in captured.err and "np.str_" not in captured.err
    trades.write_text("option_type,strike,time_to_expiry,spot,volatility\ncall,,0.5,100,0.2\n")
    assert cli.main(["price-file", str(trades), "--target", server.address]) == 2  # nothing could be priced


def test_price_file_implied_vol(server, front, tmp_path, capsys):
    price = front.price(EuropeanOption(option_type="call", strike=100, expiry=0.5), Market(spot=100, rate=0.02, volatility=0.3)).price
    trades = tmp_path / "premiums.csv"
    trades.write_text(f"option_type,strike,time_to_expiry,spot,rate,price\ncall,100,0.5,100,0.02,{price!r}\n")
    assert cli.main(["price-file", str(trades), "--implied-vol", "--json", "--target", server.address]) == 0
    doc = json.loads(output(capsys))
    assert doc["results"][0]["volatility"] == pytest.approx(0.3, rel=1e-10)


def test_a_closed_pipe_is_not_an_error(server):
    import subprocess
    import sys

    code = ("import sys; from pricegrid.clients import cli; "
            f"sys.exit(cli.main(['info', '--target', '{server.address}']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written (as `| head` can be)
    assert proc.wait(60) == 0 and b"Traceback" not in proc.stderr.read()
