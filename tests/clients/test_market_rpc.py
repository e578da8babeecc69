"""MarketClient and `pricegrid snapshot` against a real server."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from pricegrid.clients import MarketClient, PricingError, cli, grid_surface, load_snapshot
from pricegrid.v1 import market_pb2 as mpb

AS_OF = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()


def snapshot_dict(name="client-test", rates=(0.03, 0.031, 0.033)):
    return {
        "name": name, "asOf": AS_OF, "description": "synthetic test data",
        "curves": [{"id": "USD-OIS", "currency": "USD", "nodeTimes": np.array([0.5, 1.0, 2.0]),
                    "values": list(rates), "valueKind": "CURVE_VALUE_KIND_ZERO_RATE"}],
        "underlyings": [{"id": "SPX", "currency": "USD", "spot": np.float64(5000.0), "discountCurve": "USD-OIS"}],
    }


@pytest.fixture()
def market(server):
    with MarketClient(target=server.address) as client:
        yield client


def test_put_list_get_delete(market):
    info = market.put_snapshot(snapshot_dict())
    assert info.created and info.name == "client-test" and info.errors == 0 and len(info.id) == 32
    assert market.put_snapshot(snapshot_dict()).created is False
    assert info.id in [i.id for i in market.list_snapshots("client-test")]
    got, snap = market.get_snapshot(info.id)
    assert got.id == info.id and snap["curves"][0]["values"] == [0.03, 0.031, 0.033]
    assert snap["underlyings"][0]["spot"] == 5000.0
    assert market.delete_snapshot(info.id) == info.id
    with pytest.raises(PricingError) as e:
        market.get_snapshot(info.id)
    assert e.value.code.name == "NOT_FOUND"


def test_snapshot_info_counts_surfaces_and_names_the_compared_snapshot(server, market, capsys):
    demo = market.list_snapshots("demo")[0]
    assert demo.surfaces == 2 and market.get_snapshot(demo.id)[0].surfaces == 2  # the server's SnapshotInfo.surfaces
    first = market.put_snapshot(snapshot_dict("client-compared"))
    assert first.surfaces == 0 and first.compared_with == ""
    moved = market.put_snapshot(snapshot_dict("client-compared", rates=(0.03, 0.031, 0.034)))
    assert moved.compared_with == first.id and market.get_snapshot(moved.id)[0].compared_with == first.id
    target = ["--target", server.address]
    assert cli.main(["snapshot", "list", "--name", "demo", *target]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]  # (server logs)
    row = next(line for line in lines if line.startswith(demo.id)).split()
    assert lines[0].split()[4:7] == ["curves", "underlyings", "surfaces"]  # ("as of": two words in the header)
    assert row[3:6] == [str(demo.curves), str(demo.underlyings), "2"]
    assert cli.main(["snapshot", "show", demo.id, *target]) == 0
    assert _first_json(capsys.readouterr().out, "snapshot")["info"]["surfaces"] == 2
    assert cli.main(["snapshot", "list", "--name", "client-compared", "--json", *target]) == 0
    listed = _first_json(capsys.readouterr().out)
    assert [(x["id"], x["compared_with"]) for x in listed] == [(moved.id, first.id), (first.id, "")]


def test_bad_snapshot_names_the_field(market):
    bad = snapshot_dict(rates=(0.03, float("nan"), 0.033))
    with pytest.raises(PricingError) as e:
        market.put_snapshot(bad)
    assert e.value.bad_input and e.value.field == "snapshot.curves[0].values[1]"


def test_forced_put_keeps_its_reason(market):
    wild = snapshot_dict("client-forced", rates=(0.03, 2.0, 0.033))
    assert any(f.severity == "error" for f in market.validate(wild))
    with pytest.raises(PricingError) as e:
        market.put_snapshot(wild)
    assert e.value.code.name == "FAILED_PRECONDITION"
    info = market.put_snapshot(wild, force=True, reason="what-if")
    assert info.forced_reason == "what-if" and info.errors >= 1


def test_load_snapshot_reads_json_and_refuses_other_shapes(tmp_path):
    path = tmp_path / "s.json"
    d = snapshot_dict()
    d["curves"][0]["nodeTimes"] = [0.5, 1.0, 2.0]
    d["underlyings"][0]["spot"] = 5000.0
    path.write_text(json.dumps(d))
    assert load_snapshot(path).curves[0].node_times == [0.5, 1.0, 2.0]
    assert isinstance(load_snapshot(mpb.MarketSnapshot(name="x")), mpb.MarketSnapshot)
    with pytest.raises(ValueError, match="MarketSnapshot"):
        load_snapshot({"curvez": []})
    with pytest.raises(TypeError):
        load_snapshot(42)


def _first_json(text: str, key: str = ""):
    """The CLI's JSON document: the in-process server's own log lines (JSON too) may come
    before or after it on the captured stdout; the first document (with ``key``, if given)."""
    decoder, i = json.JSONDecoder(), 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        if not key or (isinstance(doc, dict) and key in doc):
            return doc
    raise AssertionError(f"no JSON document{' with ' + key if key else ''} in {text!r}")


def test_cli_snapshot_commands(server, tmp_path, capsys):
    path = tmp_path / "eod.json"
    d = snapshot_dict("cli-eod")
    d["curves"][0]["nodeTimes"] = [0.5, 1.0, 2.0]
    d["underlyings"][0]["spot"] = 5000.0
    path.write_text(json.dumps(d))
    target = ["--target", server.address]
    assert cli.main(["snapshot", "validate", str(path), *target]) == 0
    assert "0 errors" in capsys.readouterr().out
    assert cli.main(["snapshot", "put", str(path), "--json", *target]) == 0
    stored = _first_json(capsys.readouterr().out, "created")
    assert stored["created"] is True and stored["name"] == "cli-eod"
    assert cli.main(["snapshot", "list", "--name", "cli-eod", *target]) == 0
    assert stored["id"] in capsys.readouterr().out
    assert cli.main(["snapshot", "show", stored["id"], *target]) == 0
    shown = _first_json(capsys.readouterr().out, "snapshot")
    assert shown["snapshot"]["name"] == "cli-eod" and shown["info"]["id"] == stored["id"]
    assert cli.main(["snapshot", "delete", stored["id"], *target]) == 0
    assert cli.main(["snapshot", "show", stored["id"], *target]) == 2  # NOT_FOUND: the caller's id is wrong
    assert "NOT_FOUND" in capsys.readouterr().err
    d["curves"][0]["values"] = [0.03, 3.0, 0.033]
    path.write_text(json.dumps(d))
    assert cli.main(["snapshot", "validate", str(path), *target]) == 1
    assert cli.main(["snapshot", "put", str(path), *target]) == 2  # FAILED_PRECONDITION: the data's fault
    assert "curve.forward_bounds" in capsys.readouterr().err


def test_front_office_prices_against_a_snapshot(server, market):
    from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market

    snapshot_id = market.list_snapshots("demo")[0].id
    with FrontOfficeClient(target=server.address, timeout=10) as fo:
        r = fo.price(EuropeanOption(option_type="put", strike=5800.0, expiry=0.5),
                     Market(snapshot_id=snapshot_id, underlying_id="SPX"), measures=("delta", "vega"))
        assert r.market.snapshot_id == snapshot_id and r.market.vol_surface == "SPX-SVI"
        assert r.market.discount_curve == "USD-OIS" and r.price > 0 and r.greeks.delta < 0
        assert r.values == {"price": r.price, "delta": r.greeks.delta, "vega": r.greeks.vega}  # any measure by name
        inline = fo.price(EuropeanOption(option_type="put", strike=5800.0, expiry=0.5),
                          Market(snapshot_id=snapshot_id, underlying_id="SPX", volatility=0.3))
        assert inline.market.vol_surface == "" and inline.inputs.volatility == 0.3
        with pytest.raises(PricingError) as e:
            fo.price(EuropeanOption(option_type="put", strike=5800.0, expiry=0.5),
                     Market(snapshot_id=snapshot_id, underlying_id="NOPE"))
        assert e.value.field == "market.underlying_id"
    with pytest.raises(ValueError):
        Market(snapshot_id=snapshot_id)
    with pytest.raises(ValueError):
        Market(snapshot_id=snapshot_id, underlying_id="SPX", spot=100.0)


def test_cli_price_against_the_demo_snapshot(server, market, capsys):
    snapshot_id = market.list_snapshots("demo")[0].id
    argv = ["price", "--model", "bsm", "--type", "put", "--strike", "5800", "--expiry", "0.5",
            "--snapshot", snapshot_id, "--underlying", "SPX", "--greeks", "delta", "--target", server.address, "--json"]
    assert cli.main(argv) == 0
    out = _first_json(capsys.readouterr().out, "market")
    assert out["market"]["vol_surface"] == "SPX-SVI" and out["price"] > 0
    assert cli.main(argv[:-4] + ["--target", server.address]) == 2  # no --underlying
    assert "--underlying" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [(["--rate", "0.2"], "--rate"), (["--dividend", "0.1"], "--dividend"),
                                          (["--rate", "0", "--dividend", "0.1"], "--rate, --dividend")])
def test_cli_price_on_a_snapshot_refuses_inline_rates(server, market, capsys, flags, named):
    """As the server (market.rate) and Market() refuse them: never dropped without a word."""
    snapshot_id = market.list_snapshots("demo")[0].id
    argv = ["price", "--type", "put", "--strike", "5800", "--expiry", "0.5", "--snapshot", snapshot_id,
            "--underlying", "SPX", "--vol", "0.2", "--target", server.address]
    assert cli.main(argv + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}:") and "snapshot" in err and "Traceback" not in err


def test_cli_underlying_belongs_to_a_snapshot(server, capsys):
    argv = ["price", "--type", "put", "--strike", "100", "--expiry", "0.5", "--spot", "100", "--vol", "0.2",
            "--underlying", "SPX", "--target", server.address]
    assert cli.main(argv) == 2
    assert "--underlying" in capsys.readouterr().err


def test_cli_iv_takes_no_snapshot(server, market, capsys):
    """The server solves implied vols on inline markets only: the flag is not offered."""
    snapshot_id = market.list_snapshots("demo")[0].id
    assert cli.main(["iv", "--type", "put", "--strike", "5800", "--expiry", "0.5", "--snapshot", snapshot_id,
                     "--underlying", "SPX", "--price", "100", "--target", server.address]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --snapshot: implied volatility is solved on an inline market")
    assert cli.main(["iv", "--help"]) == 0
    assert "--snapshot" not in capsys.readouterr().out


def test_stored_curves_and_surfaces_are_read_through_the_server(market):
    from pricegrid.server.app import demo
    from pricegrid.server.pricers.curves import zero_rates
    from pricegrid.server.pricers.surfaces import vols as surface_vols

    snapshot_id = market.list_snapshots("demo")[0].id
    t = np.array([0.0, 0.1, 1.0, 7.5, 40.0])
    got = market.curve(snapshot_id, "USD-OIS", t)
    local = demo.snapshot()
    np.testing.assert_array_equal(got["zero_rates"], zero_rates(local.curve("USD-OIS"), t)[0])
    assert np.all(np.diff(-np.log(got["discount_factors"][1:])) > 0)
    smile = market.surface(snapshot_id, "SPX-SVI", [0.5, 0.5, 0.5], [5000.0, 6000.0, 7000.0])
    f = smile["forwards"]
    np.testing.assert_array_equal(smile["vols"], surface_vols(local.surface("SPX-SVI"), np.full(3, 0.5),
                                                              np.array([5000.0, 6000.0, 7000.0]), f)[0])
    assert smile["vols"][0] > smile["vols"][1] > smile["vols"][2]
    with pytest.raises(PricingError) as e:
        market.curve(snapshot_id, "JPY-TONA", t)
    assert e.value.code.name == "NOT_FOUND" and e.value.field == "curve_id"
    with pytest.raises(PricingError) as e:
        market.curve(snapshot_id, "USD-OIS", [1.0, -1.0])
    assert e.value.field == "times[1]"
    with pytest.raises(PricingError) as e:
        market.surface(snapshot_id, "SPX-SVI", [0.5], [-5.0])
    assert e.value.field == "strikes[0]"
    with pytest.raises(PricingError) as e:
        market.curve(snapshot_id, "USD-OIS", np.zeros(100_001))
    assert e.value.code.name == "RESOURCE_EXHAUSTED"


def test_cli_plots_a_snapshot(server, market, tmp_path, capsys):
    snapshot_id = market.list_snapshots("demo")[0].id
    png = tmp_path / "demo.png"
    assert cli.main(["snapshot", "plot", snapshot_id, "--png", str(png), "--target", server.address]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert cli.main(["snapshot", "plot", snapshot_id, "--png", str(png), "--surface", "NOPE",
                     "--target", server.address]) == 2
    capsys.readouterr()
    bare = tmp_path / "plotnoext"  # written and reported as given (matplotlib would add .png)
    assert cli.main(["snapshot", "plot", snapshot_id, "--png", str(bare), "--target", server.address]) == 0
    assert f"wrote {bare}" in capsys.readouterr().out
    assert bare.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "plotnoext.png").exists()
    nowhere = tmp_path / "missing" / "dir" / "x.png"
    assert cli.main(["snapshot", "plot", snapshot_id, "--png", str(nowhere), "--target", server.address]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot write {nowhere}: No such file or directory"


def test_a_grid_surface_from_a_pandas_frame(market):
    import pandas as pd

    from pricegrid.clients import grid_surface

    frame = pd.DataFrame([[0.26, 0.22, 0.20], [0.25, 0.215, 0.2]], index=[0.5, 1.0], columns=[0.9, 1.0, 1.1])
    d = snapshot_dict("frame-grid")
    d["surfaces"] = [grid_surface("SPX-G", "SPX", frame, axis="moneyness")]
    d["underlyings"][0]["volSurface"] = "SPX-G"
    info = market.put_snapshot(d)
    assert info.errors == 0
    vols = market.surface(info.id, "SPX-G", [0.5, 1.0], [1.0, 1.0], forwards=[1.0])["vols"]
    np.testing.assert_allclose(vols, [0.22, 0.215], rtol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        grid_surface("x", "SPX", np.ones((2, 2)), expiries=[1.0], nodes=[1.0, 2.0])


DELTA_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "eurusd-delta-grid.json"


def test_a_delta_grid_from_grid_surface_and_from_the_docs_example_file(server, market):
    """axis="delta": forward call deltas, premium-unadjusted, decreasing (strikes increasing);
    the docs' example snapshot file goes in as it is, and a put on EURUSD prices off its smile."""
    from scipy.special import ndtr, ndtri

    from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, grid_surface

    deltas, vols = [0.9, 0.75, 0.5, 0.25, 0.1], np.array([[0.26, 0.22, 0.19, 0.17, 0.165], [0.25, 0.21, 0.19, 0.175, 0.17]])
    d = snapshot_dict("delta-grid")
    d["surfaces"] = [grid_surface("SPX-D", "SPX", vols, expiries=[0.5, 1.0], nodes=deltas, axis="delta")]
    assert d["surfaces"][0]["grid"]["axis"] == "STRIKE_AXIS_DELTA"
    d["underlyings"][0]["volSurface"] = "SPX-D"
    info = market.put_snapshot(d)
    assert info.errors == 0
    sd = vols * np.sqrt([[0.5], [1.0]])
    K = np.exp(sd * (0.5 * sd - ndtri(deltas))).ravel()  # each node's own strike at F = 1
    got = market.surface(info.id, "SPX-D", np.repeat([0.5, 1.0], 5), K, forwards=[1.0])
    np.testing.assert_allclose(got["vols"], vols.ravel(), rtol=1e-12)
    with pytest.raises(PricingError) as e:  # increasing deltas: decreasing strikes
        market.put_snapshot({**d, "surfaces": [grid_surface("SPX-D", "SPX", vols, expiries=[0.5, 1.0],
                                                            nodes=deltas[::-1], axis="delta")]})
    assert e.value.code.name == "INVALID_ARGUMENT" and e.value.field == "snapshot.surfaces[0].grid.nodes[1]"
    with pytest.raises(ValueError, match="delta"):
        grid_surface("x", "SPX", vols, expiries=[0.5, 1.0], nodes=deltas, axis="call_delta")
    # the example file in docs/ (JSON)
    example = market.put_snapshot(DELTA_EXAMPLE)
    assert example.errors == 0 and not [f for f in example.findings if f.check.startswith("surface.")]
    _, stored = market.get_snapshot(example.id)
    assert stored["surfaces"][0]["grid"]["axis"] == "STRIKE_AXIS_DELTA"
    with FrontOfficeClient(target=server.address, timeout=10) as fo:
        r = fo.price(EuropeanOption(option_type="put", strike=1.06, expiry=0.25),
                     Market(snapshot_id=example.id, underlying_id="EURUSD"), measures=("delta",))
        assert r.market.vol_surface == "EURUSD-VOL" and r.greeks.delta < 0
        sd = r.inputs.volatility * 0.5
        d1 = (np.log(r.inputs.forward / 1.06) + 0.5 * sd * sd) / sd
        # a 3-month 1.06 put (F = 1.091): call delta between the 0.9 and 0.75 nodes, so its
        # vol is between theirs on the 3-month slice
        assert 0.75 < ndtr(d1) < 0.9 and 0.0805 < r.inputs.volatility < 0.086


def test_the_delta_grid_example_as_a_yaml_file(market, tmp_path):
    yaml = pytest.importorskip("yaml")  # reading YAML is optional (PyYAML)
    path = tmp_path / "eurusd.yaml"
    path.write_text(yaml.safe_dump(json.loads(DELTA_EXAMPLE.read_text())))
    assert "STRIKE_AXIS_DELTA" in path.read_text()
    assert market.put_snapshot(path).id == market.put_snapshot(DELTA_EXAMPLE).id  # the same content, the same id


@pytest.mark.parametrize("name, text", [
    ("list.json", "[]"), ("str.json", '"a snapshot"'), ("bad.json", '{"name": '), ("empty.yaml", ""),
    ("list.yaml", "- 1\n- 2\n"), ("bad.yaml", "name: [unclosed\n"), ("missing.json", None), ("dir.yaml", "dir"),
])
def test_cli_snapshot_files_that_are_not_snapshots_exit_2_with_json(server, tmp_path, capsys, name, text):
    path = tmp_path / name
    if text == "dir":
        path.mkdir()
    elif text is not None:
        path.write_text(text)
    for action in ("put", "validate"):
        assert cli.main(["snapshot", action, str(path), "--json", "--target", server.address]) == 2
        captured = capsys.readouterr()
        error = _first_json(captured.out, "error")["error"]
        assert error["code"] == "INVALID_ARGUMENT" and str(path) in error["message"]
        assert "Traceback" not in captured.err and str(path) in captured.err


def test_yaml_with_unquoted_times_and_dates_is_read(server, tmp_path):
    yaml = pytest.importorskip("yaml")
    d = snapshot_dict("client-yaml")
    d["curves"][0]["nodeTimes"] = [0.5, 1.0, 2.0]
    d["underlyings"][0]["spot"] = 5000.0
    as_of = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    text = yaml.safe_dump(d).replace(f"asOf: '{AS_OF}'", f"asOf: {as_of.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    text += f"valuationDate: {as_of.date().isoformat()}\n"
    path = tmp_path / "eod.yaml"
    path.write_text(text)
    assert isinstance(yaml.safe_load(text)["asOf"], dt.datetime)  # what PyYAML makes of it
    msg = load_snapshot(path)
    assert msg.as_of.ToDatetime(tzinfo=dt.timezone.utc) == as_of
    assert (msg.valuation_date.year, msg.valuation_date.month, msg.valuation_date.day) == \
        (as_of.year, as_of.month, as_of.day)
    with MarketClient(target=server.address) as client:
        assert client.put_snapshot(path).name == "client-yaml"


def test_nan_points_reach_the_server_which_names_them(market):
    d = snapshot_dict("client-nan")
    d["surfaces"] = [grid_surface("G", "SPX", [[0.2, 0.2]], expiries=[0.5], nodes=[0.9, 1.1], axis="moneyness")]
    sid = market.put_snapshot(d).id
    nan = float("nan")
    for call, field in ((lambda: market.curve(sid, "USD-OIS", [1.0, nan]), "times[1]"),
                        (lambda: market.surface(sid, "G", [0.5, nan], [5000.0, 5000.0]), "expiries[1]"),
                        (lambda: market.surface(sid, "G", [0.5], np.array([nan])), "strikes[0]"),
                        (lambda: market.surface(sid, "G", [0.5], [5000.0], [nan]), "forwards[0]")):
        with pytest.raises(PricingError) as e:  # not a TypeError in the client
            call()
        assert e.value.bad_input and e.value.field == field
    assert market.surface(sid, "G", [0.5], [5000.0])["vols"][0] == 0.2
    assert market.curve(sid, "USD-OIS", np.array([1.0]))["discount_factors"][0] > 0
