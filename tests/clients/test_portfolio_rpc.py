"""Portfolios of several books (any mix of products and underlyings of one snapshot) and
stored portfolios, through RiskClient against a real server (the session's, 127.0.0.1, its
built-in demo snapshot): a run of books equals each book run on its own, bit for bit; a
stored portfolio runs as the books it stores, by name (its newest version) or id, on the
snapshot the run names; bad portfolios are refused with every field named."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from pricegrid.clients import PricingError, Shift
from tests.clients.test_scenario_risk_rpc import _json_objects

SHIFTS = [Shift("spx", "spot", "relative", ["SPX"]), Shift("eua", "spot", "relative", ["EUA-*"]),
          Shift("vol", "vol", "absolute", ["*"]), Shift("usd", "zero_rate", "absolute", ["USD-*"])]
SIZES = np.array([[-0.2, -0.05, 0.0, 0.05, 0.1],
                  [0.1, 0.0, -0.3, 0.02, 0.0],
                  [0.05, 0.01, 0.1, -0.01, 0.0],
                  [0.01, 0.0, -0.005, 0.0, 0.002]])
LABELS = ["crash", "dip", "eua-slump", "up", "rally"]


def _books(risk, snapshot_id="", n=12, seed=5):
    rng = np.random.default_rng(seed)
    euro = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id,
                     option_type=np.where(rng.random(n) < 0.5, "call", "put"), strike=rng.uniform(5000, 7000, n),
                     time_to_expiry=rng.uniform(0.1, 2.0, n), quantity=rng.choice([-2.0, 1.0, 5.0], n),
                     trade_ids=[f"E{i}" for i in range(n)], tags={"desk": "index", "book": "vanilla"})
    american = risk.book("american", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id,
                         option_type="put", strike=rng.uniform(5500, 6500, 4), time_to_expiry=rng.uniform(0.2, 1.0, 4),
                         quantity=-3.0, tags={"desk": "index", "book": ["am1", "am2", "am1", "am2"]})
    futures = risk.book("european", model="black76", underlying_id="EUA-DEC27", snapshot_id=snapshot_id,
                        option_type=np.where(rng.random(6) < 0.5, "call", "put"), strike=rng.uniform(60, 100, 6),
                        time_to_expiry=rng.uniform(0.2, 0.9, 6), trade_ids=[f"F{i}" for i in range(6)],
                        tags={"desk": "carbon", "book": "eua"})
    return [euro, american, futures]


def _alone(risk, book, **kw):
    """One book run on its own, with the shifts that match it (the others do not move it)."""
    rows = [1, 2] if book.trades.market.underlying_id.startswith("EUA") else [0, 2, 3]
    return risk.scenario_risk(books=[book], shifts=[SHIFTS[i] for i in rows], sizes=SIZES[rows], labels=LABELS, **kw)


def test_a_run_of_books_is_each_book_run_on_its_own_bit_for_bit(risk, snapshot_id):
    books = _books(risk, snapshot_id)
    r = risk.scenario_risk(books=books, shifts=SHIFTS, sizes=SIZES, labels=LABELS, output="both", trade_risk=True,
                           aggregate_by=["desk", "book"])
    assert [(b.trade_start, b.trade_stop, b.product) for b in r.books] == [
        (0, 12, "european"), (12, 16, "american"), (16, 22, "european")]
    assert [b.priced_by["engine"] for b in r.books][0] == "analytic_european"
    assert r.books[2].market["underlying_id"] == "EUA-DEC27" and r.books[2].priced_by["model"] == "black_76"
    assert r.trade_ids[:2] == ["E0", "E1"] and r.trade_ids[12:14] == ["1:0", "1:1"] and r.trade_ids[16] == "F0"
    assert r.cube.shape == (22, 5) and not r.errors and np.isfinite(r.cube).all()
    pieces = []
    for b, used in zip(books, r.books):
        one = _alone(risk, b, output="both", trade_risk=True)
        np.testing.assert_array_equal(r.cube[used.trade_start:used.trade_stop], one.cube)
        np.testing.assert_array_equal(r.base[used.trade_start:used.trade_stop], one.base)
        np.testing.assert_array_equal(r.trade_var[used.trade_start:used.trade_stop], one.trade_var)
        pieces.append(one.cube)
    np.testing.assert_allclose(r.portfolio_pnl, np.vstack(pieces).sum(axis=0), rtol=1e-12, atol=1e-9)
    # each book moves with its own underlying only: the EUA slump leaves the SPX books flat
    # but for the vol shift, and the SPX crash leaves the futures book to its own shifts
    assert np.all(r.cube[16:, LABELS.index("eua-slump")] != 0) and np.all(r.cube[16:, 0] != 0)
    # the hierarchy across books
    assert r.node("desk=carbon").trades == 6 and r.node("desk=index").trades == 16
    assert r.node("desk=index", "book=am1").trades == 2
    np.testing.assert_allclose(r.node("desk=carbon").pnl, r.cube[16:].sum(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(r.node("desk=index", "book=am2").pnl, r.cube[[13, 15]].sum(axis=0), rtol=1e-12)


def test_a_shift_needs_to_match_some_book_and_moves_only_the_books_it_matches(risk, snapshot_id):
    books = _books(risk, snapshot_id)
    eua_only = [Shift("eua", "spot", "relative", ["EUA-DEC27"])]
    r = risk.scenario_risk(books=books, shifts=eua_only, sizes=[[-0.1, 0.1]], labels=["dn", "up"], output="cube")
    np.testing.assert_array_equal(r.cube[:16], 0.0)
    assert np.all(r.cube[16:] != 0.0)
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=books[:2], shifts=eua_only, sizes=[[-0.1]], labels=["dn"])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "scenarios.shifts[0].selector"


def test_a_stored_portfolio_runs_by_name_or_id_on_the_snapshot_the_run_names(risk, snapshot_id):
    books = _books(risk, seed=9)  # no snapshot in the books: the run names it
    first = risk.put_portfolio("tests/equity-book", books, description="three books")
    assert first.created and len(first.id) == 32 and first.books == 3 and first.trades == 22
    again = risk.put_portfolio("tests/equity-book", books, description="three books")
    assert not again.created and again.id == first.id
    got = risk.get_portfolio("tests/equity-book")
    assert got.id == first.id and got.description == "three books" and list(got.portfolio.books) == books
    inline = risk.scenario_risk(books=books, snapshot_id=snapshot_id, shifts=SHIFTS, sizes=SIZES, labels=LABELS,
                                output="both")
    by_name = risk.scenario_risk(portfolio="tests/equity-book", snapshot_id=snapshot_id, shifts=SHIFTS, sizes=SIZES,
                                 labels=LABELS, output="both")
    np.testing.assert_array_equal(by_name.cube, inline.cube)
    assert by_name.portfolio_id == first.id and by_name.trade_ids == inline.trade_ids
    assert by_name.market["snapshot_id"] == snapshot_id
    # a new version: the name runs the newest, the old id still runs the old one
    second = risk.put_portfolio("tests/equity-book", books[:2])
    assert second.created and second.id != first.id and second.trades == 16
    assert len(risk.scenario_risk(portfolio="tests/equity-book", snapshot_id=snapshot_id, shifts=SHIFTS[:1],
                                  sizes=SIZES[:1], labels=LABELS).trade_ids) == 16
    old = risk.scenario_risk(portfolio=first.id, snapshot_id=snapshot_id, shifts=SHIFTS, sizes=SIZES, labels=LABELS,
                             output="cube")
    np.testing.assert_array_equal(old.cube, inline.cube)
    listed = risk.list_portfolios("tests/equity-book")
    assert [p.id for p in listed] == [second.id, first.id] and listed[0].portfolio is None
    # sensitivities of a stored portfolio are its books' sensitivities
    sens = risk.sensitivities(portfolio=first.id, snapshot_id=snapshot_id, shifts=SHIFTS[:1], bumps=[0.01])
    alone = risk.sensitivities(books=books[2:], snapshot_id=snapshot_id, shifts=SHIFTS[1:2], bumps=[0.01])
    assert sens.delta.shape == (22, 1) and np.all(sens.delta[16:] == 0.0) and np.all(alone.delta[:, 0] != 0.0)
    assert risk.delete_portfolio(second.id) and not risk.delete_portfolio(second.id)
    assert risk.get_portfolio("tests/equity-book").id == first.id
    with pytest.raises(PricingError) as e:  # a stored portfolio without a snapshot needs the run to name one
        risk.scenario_risk(portfolio=first.id, shifts=SHIFTS, sizes=SIZES, labels=LABELS)
    assert e.value.field == "stored_portfolio.books[0].trades.market.snapshot_id"
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(portfolio="tests/no-such-book", snapshot_id=snapshot_id, shifts=SHIFTS, sizes=SIZES,
                           labels=LABELS)
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.field == "stored_portfolio"


def test_bad_portfolios_are_refused_with_every_field_named(risk, snapshot_id):
    books = _books(risk, snapshot_id)
    bad_strike = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id,
                           option_type="call", strike=[6000.0, 6100.0, 6200.0], time_to_expiry=[0.5, 1.0, 1.5])
    bad_strike.trades.european.strike.raw = np.array([6000.0, 6100.0]).tobytes()  # 2 strikes for 3 trades
    dup = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id, option_type="call",
                    strike=6000.0, time_to_expiry=[0.5], trade_ids=["E3"])
    with pytest.raises(PricingError) as e:
        risk.put_portfolio("tests/bad", [books[0], bad_strike])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in e.value.field_violations} >= {"portfolio.books[1].trades.european.strike"}
    with pytest.raises(PricingError) as e:
        risk.put_portfolio("tests/dup", [books[0], dup])
    assert e.value.field == "portfolio.books" and "'E3'" in str(e.value)
    with pytest.raises(PricingError) as e:
        risk.put_portfolio("no spaces allowed", books)
    assert e.value.field == "name"
    other = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id="another-snapshot",
                      option_type="call", strike=6000.0, time_to_expiry=[0.5])
    untagged = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id,
                         option_type="call", strike=6000.0, time_to_expiry=[0.5])
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=[books[0], other], shifts=SHIFTS, sizes=SIZES, labels=LABELS)
    assert e.value.field == "books.books[1].trades.market.snapshot_id"
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=[books[0], untagged], shifts=SHIFTS[:1], sizes=SIZES[:1], labels=LABELS,
                           aggregate_by=["desk"])
    assert e.value.field == "aggregate_by[0]" and "book 1" in str(e.value)
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=[], shifts=SHIFTS, sizes=SIZES, labels=LABELS)
    assert e.value.field == "books.books" and "at least one book" in str(e.value)
    with pytest.raises(ValueError):
        risk.scenario_risk(books=books, model="bsm", shifts=SHIFTS, sizes=SIZES, labels=LABELS)
    # the server keeps serving
    assert len(risk.scenario_risk(books=books, shifts=SHIFTS, sizes=SIZES, labels=LABELS).portfolio_pnl) == 5


def test_cli_runs_a_csv_of_several_books_stores_it_and_runs_it_by_name(server, risk, snapshot_id, tmp_path, capsys):
    from pricegrid.clients import cli

    book = tmp_path / "book.csv"
    book.write_text("trade_id,instrument,underlying,model,option_type,strike,time_to_expiry,barrier_type,barrier,"
                    "quantity,desk\n"
                    "A,european,SPX,bsm,call,6000,0.5,,,2,eq\n"
                    "B,barrier,SPX,bsm,put,5800,1.0,down_out,5000,-1,eq\n"
                    "C,european,EUA-DEC27,black76,call,80,0.5,,,10,carbon\n"
                    "D,european,SPX,bsm,put,5500,1.5,,,1,eq\n")
    scenarios = tmp_path / "stress.json"
    scenarios.write_text('{"labels": ["dn", "up"], "shifts": [{"name": "spx", "quantity": "spot", "kind": "relative",'
                         ' "selector": ["SPX"], "sizes": [-0.1, 0.1]}], "stresses": ["covid-2020"],'
                         ' "stress_targets": {"equity": ["SPX", "EUA-*"], "equity_vol": ["*"]}}')
    common = ["--scenarios", str(scenarios), "--snapshot", snapshot_id, "--aggregate-by", "desk", "--output", "both",
              "--target", server.address, "--json"]
    assert cli.main(["risk", "run", "--portfolio", str(book), *common]) == 0
    doc = next(d for d in _json_objects(capsys.readouterr().out) if "portfolio_pnl" in d)
    assert doc["trades"] == 4 and doc["scenarios"] == 3 and list(doc["portfolio_pnl"]) == ["dn", "up", "covid-2020"]
    assert [(b["product"], b["trade_start"], b["trade_stop"]) for b in doc["books"]] == [
        ("european", 0, 2), ("barrier", 2, 3), ("european", 3, 4)]
    assert [(n["path"], n["trades"]) for n in doc["nodes"]] == [(["desk=carbon"], 1), (["desk=eq"], 3)]
    # the same CSV through the client gives the same numbers
    books = [risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id, option_type=["call", "put"],
                       strike=[6000.0, 5500.0], time_to_expiry=[0.5, 1.5], quantity=[2.0, 1.0], trade_ids=["A", "D"]),
             risk.book("barrier", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id, option_type="put",
                       strike=[5800.0], time_to_expiry=[1.0], barrier_type="down_out", barrier=[5000.0],
                       quantity=[-1.0], trade_ids=["B"]),
             risk.book("european", model="black76", underlying_id="EUA-DEC27", snapshot_id=snapshot_id,
                       option_type="call", strike=[80.0], time_to_expiry=[0.5], quantity=[10.0], trade_ids=["C"])]
    direct = risk.scenario_risk(books=books, shifts=[Shift("spx", "spot", "relative", ["SPX"])], sizes=[[-0.1, 0.1]],
                                labels=["dn", "up"], stresses=["covid-2020"],
                                stress_targets={"equity": ["SPX", "EUA-*"], "equity_vol": ["*"]})
    assert sorted(doc["portfolio_pnl"].values()) == pytest.approx(sorted(direct.portfolio_pnl), rel=1e-12)
    # stored, then run by name
    assert cli.main(["risk", "put-portfolio", "tests/cli-book", "--portfolio", str(book), "--tag", "desk",
                     "--target", server.address, "--json"]) == 0
    stored = next(d for d in _json_objects(capsys.readouterr().out) if "trades" in d)
    assert stored["books"] == 3 and stored["trades"] == 4 and stored["created"] is True
    assert cli.main(["risk", "run", "--stored-portfolio", "tests/cli-book", *common]) == 0
    again = next(d for d in _json_objects(capsys.readouterr().out) if "portfolio_pnl" in d)
    assert again["portfolio_pnl"] == doc["portfolio_pnl"] and again["portfolio_id"] == stored["id"]
    # the catalogue, as a table
    assert cli.main(["risk", "stresses", "--target", server.address]) == 0
    text = capsys.readouterr().out
    assert "black-monday-1987" in text and "source:" in text and "usd_rates" in text
    # a cell of another instrument's column is named with its line, exit 2
    book.write_text("instrument,underlying,option_type,strike,time_to_expiry,barrier,desk\n"
                    "european,SPX,call,6000,0.5,5000,eq\n")
    assert cli.main(["risk", "run", "--portfolio", str(book), *common[:-1]]) == 2
    assert "line 2: column 'barrier' is not an input of european" in capsys.readouterr().err
