"""Portfolios as the risk RPCs read them (proto -> service), and the stored ones.

A run's trades come in one of three forms, each checked with every violation named from
the request's root:

* ``portfolio`` (+ ``quantity``, ``trade_ids``): one PriceBatchRequest, one book;
* ``books``: a Portfolio of books, any mix of products and underlyings of one snapshot;
* ``stored_portfolio``: a name (its newest version) or id of a portfolio put with
  PutPortfolio, read back and checked as ``books`` is.

``snapshot_id`` (with the two last forms) replaces every book's market.snapshot_id, so one
stored portfolio runs on any day's snapshot. The trades are numbered across the books in
order; trade ids must be unique across the portfolio.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from pricegrid.server.domain import portfolios as pf
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid
from pricegrid.server.domain.instruments import SnapshotMarket
from pricegrid.server.domain.models import Measure
from pricegrid.server.rpc import requests as req
from pricegrid.server.rpc.requests import doubles, unknown_enums
from pricegrid.server.service.pricing import PricingService
from pricegrid.server.service.scenarios import MAX_QUANTITY, Book
from pricegrid.v1 import pricing_pb2 as ppb
from pricegrid.v1 import risk_pb2 as rpb

#: the most books one portfolio may hold
MAX_BOOKS = 1_000
#: the longest tag value
MAX_TAG_TEXT = 256


def prefixed(exc: ServiceError, prefix: str) -> ServiceError:
    """The same error with every field named from the request's root."""
    violations = [FieldViolation(prefix + v.field if v.field else prefix.rstrip("."), v.description)
                  for v in exc.violations]
    text = "; ".join(f"{v.field}: {v.description}" for v in violations) or exc.message
    return ServiceError(exc.code, text, violations)


@dataclass
class PortfolioInputs:
    """A run's trades: its books in order (each knowing its first trade), the trade ids,
    every tag as one value per trade (or one for all), the stored portfolio's id."""

    books: list[Book]
    rows: int
    trade_ids: list[str]
    tags: dict[str, np.ndarray] = field(default_factory=dict)
    portfolio_id: str = ""
    #: the names of tags given but refused (their violations name them; nothing that reads
    #: them is checked again)
    bad_tags: set = field(default_factory=set)

    @property
    def settings(self):
        return self.books[0].settings if self.books else None


def _quantity(msg_has: bool, column, rows: int, path: str, bad: Violations) -> np.ndarray:
    if not msg_has:
        return np.ones(1)
    with bad.check():
        q = doubles(column, path)
        if len(q) not in (1, rows):
            raise invalid(path, f"{len(q)} values for {rows} trades: one per trade, or one")
        too_big = ~(np.abs(q) <= MAX_QUANTITY)
        if too_big.any():
            raise invalid(path, f"not finite or over {MAX_QUANTITY:g} in size at trade {int(np.argmax(too_big))}")
        return q
    return np.ones(1)


def _tag_columns(tags, rows: int, path: str, bad: Violations, refused: Optional[set] = None
                 ) -> dict[str, np.ndarray]:
    """The valid tag columns by name; the names of the refused ones into ``refused``."""
    columns: dict[str, np.ndarray] = {}
    for i, t in enumerate(tags):
        if not t.name.strip():
            bad.add(f"{path}[{i}].name", "required")
            continue
        if t.name in columns:
            bad.add(f"{path}[{i}].name", f"{t.name!r} repeats an earlier tag")
        elif len(t.values) not in (1, rows):
            bad.add(f"{path}[{i}].values", f"{len(t.values)} values for {rows} trades: one per trade, or one")
        elif any(len(v) > MAX_TAG_TEXT for v in t.values):
            bad.add(f"{path}[{i}].values", f"a value over {MAX_TAG_TEXT} characters")
        else:
            columns[t.name] = np.asarray(list(t.values), dtype=object)
            continue
        if refused is not None:
            refused.add(t.name)
    return columns


def _book(trades, path: str, service: PricingService, bad: Violations):
    """(spec, batch, market, rows, fields, settings) of one book, or None (violations added)."""
    try:
        spec, batch, market, rows, fields, measures, settings = req.product_batch(
            trades, service.catalogue, service.limits.max_rows)
    except ServiceError as exc:
        bad.extend(prefixed(exc, path + "."))
        return None
    if tuple(measures) != (Measure.PRICE,):
        bad.add(f"{path}.measures", "a scenario run revalues the price: leave the measures empty or PRICE")
    if not isinstance(market, SnapshotMarket):
        bad.add(f"{path}.market.snapshot_id", "required: scenarios shift a stored snapshot's market")
        return None
    return spec, batch, market, rows, {k: f"{path}.{v}" for k, v in fields.items()}, settings


def _single(request, service: PricingService, bad: Violations) -> Optional[PortfolioInputs]:
    parsed = _book(request.portfolio, "portfolio", service, bad)
    if parsed is None:
        return None
    spec, batch, market, rows, fields, settings = parsed
    if request.trade_ids and len(request.trade_ids) != rows:
        bad.add("trade_ids", f"{len(request.trade_ids)} ids for {rows} trades")
    quantity = _quantity(request.HasField("quantity"), request.quantity, rows, "quantity", bad)
    ids = list(request.trade_ids) or [str(i) for i in range(rows)]
    book = Book(spec, batch, market, rows, fields, quantity, settings, request.portfolio.threads, 0)
    return PortfolioInputs([book], rows, ids)


def _books(portfolio: rpb.Portfolio, path: str, snapshot_id: str, service: PricingService,
           bad: Violations) -> Optional[PortfolioInputs]:
    if not portfolio.books:
        bad.add(f"{path}.books", "at least one book")
        return None
    if len(portfolio.books) > MAX_BOOKS:
        bad.add(f"{path}.books", f"{len(portfolio.books):,} books; at most {MAX_BOOKS:,}", Code.RESOURCE_EXHAUSTED)
        return None
    books, ids, tags, start, snapshots, refused = [], [], [], 0, {}, set()
    for i, b in enumerate(portfolio.books):
        bp = f"{path}.books[{i}]"
        trades = b.trades
        if snapshot_id:
            trades = ppb.PriceBatchRequest()
            trades.CopyFrom(b.trades)
            trades.market.snapshot_id = snapshot_id
        elif not b.trades.market.snapshot_id and b.trades.market.underlying_id:
            bad.add(f"{bp}.trades.market.snapshot_id", "required: name the snapshot here or in the request's "
                                                       "snapshot_id")
            continue
        parsed = _book(trades, f"{bp}.trades", service, bad)
        if parsed is None:
            continue
        spec, batch, market, rows, fields, settings = parsed
        snapshots.setdefault(market.snapshot_id, i)
        if b.trade_ids and len(b.trade_ids) != rows:
            bad.add(f"{bp}.trade_ids", f"{len(b.trade_ids)} ids for {rows} trades")
        quantity = _quantity(b.HasField("quantity"), b.quantity, rows, f"{bp}.quantity", bad)
        books.append(Book(spec, batch, market, rows, fields, quantity, settings, trades.threads, start))
        ids.extend(b.trade_ids if len(b.trade_ids) == rows else [f"{i}:{r}" for r in range(rows)])
        tags.append(_tag_columns(b.tags, rows, f"{bp}.tags", bad, refused))
        start += rows
    if len(snapshots) > 1:
        first, *others = snapshots.items()
        for sid, i in others:
            bad.add(f"{path}.books[{i}].trades.market.snapshot_id",
                    f"{sid!r}: every book is priced on one snapshot ({first[0]!r} in books[{first[1]}]); "
                    "or set the request's snapshot_id")
    if bad:
        return None
    return PortfolioInputs(books, start, ids, _merge_tags(books, tags), bad_tags=refused)


def _merge_tags(books: list[Book], tags: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each tag as one value per trade of the portfolio; a book without it holds None."""
    names = {n for t in tags for n in t}
    total = sum(b.rows for b in books)
    out = {}
    for name in names:
        column = np.full(total, None, dtype=object)
        for b, t in zip(books, tags):
            if name in t:
                column[b.start:b.start + b.rows] = t[name] if len(t[name]) == b.rows else t[name][0]
        out[name] = column
    return out


def _unique_ids(inputs: PortfolioInputs, path: str, bad: Violations) -> None:
    seen: dict[str, int] = {}
    for j, tid in enumerate(inputs.trade_ids):
        first = seen.setdefault(tid, j)
        if first != j:
            bad.add(path, f"trade id {tid!r} of trade {j} repeats trade {first}'s")
            return


def portfolio_inputs(request, service: PricingService, bad: Violations,
                     stored: Optional[Callable[[str], Optional[pf.StoredPortfolio]]] = None
                     ) -> Optional[PortfolioInputs]:
    """The trades of a RunScenarioRiskRequest-like message (portfolio, quantity, trade_ids,
    books, stored_portfolio, snapshot_id, tags), violations added to ``bad``; ``stored``
    looks a stored portfolio up by name or id."""
    forms = [f for f in ("portfolio", "books") if request.HasField(f)] + (
        ["stored_portfolio"] if request.stored_portfolio else [])
    if len(forms) != 1:
        bad.add("portfolio", "required: exactly one of portfolio, books and stored_portfolio"
                if not forms else f"send one of portfolio, books and stored_portfolio (got {', '.join(forms)})")
        return None
    form = forms[0]
    if form != "portfolio":
        for name in ("trade_ids", "quantity"):
            if (request.HasField(name) if name == "quantity" else len(getattr(request, name))):
                bad.add(name, f"with {form}, each book carries its own {name}")
    elif request.snapshot_id:
        bad.add("snapshot_id", "with portfolio, name the snapshot in portfolio.market.snapshot_id")
    portfolio_id = ""
    if form == "portfolio":
        inputs = _single(request, service, bad)
    elif form == "books":
        inputs = _books(request.books, "books", request.snapshot_id, service, bad)
    else:
        record = lookup(stored, request.stored_portfolio, "stored_portfolio")
        message = rpb.Portfolio.FromString(record.content)
        inputs = _books(message, "stored_portfolio", request.snapshot_id, service, bad)
        portfolio_id = record.portfolio_id
    if inputs is None:
        return None
    inputs.portfolio_id = portfolio_id
    _unique_ids(inputs, "trade_ids" if form == "portfolio" else f"{form}.books", bad)
    whole = _tag_columns(request.tags, inputs.rows, "tags", bad, inputs.bad_tags)
    for name, values in whole.items():
        if name in inputs.tags:
            bad.add("tags", f"{name!r} is also a tag of a book: give it once")
        else:
            inputs.tags[name] = values
    return inputs


def _rows(a, lo: int, hi: int, n: int):
    """A column of n rows (or one, broadcast) cut to rows [lo, hi)."""
    if a is None:
        return None
    a = np.asarray(a)
    return a[lo:hi] if a.size == n and n != 1 else a


def sliced(inputs: PortfolioInputs, start: int, stop: int, bad: Violations) -> tuple[PortfolioInputs, int, int]:
    """The trades [start, stop) of the portfolio as one of its own (books cut, numbered from
    0), the slice's offset and the portfolio's size; (0, 0): all of it."""
    total = inputs.rows
    if start == 0 and stop == 0:
        return inputs, 0, total
    if not (0 <= start < stop <= total):
        bad.add("trade_start", f"[{start}, {stop}) is not a range of the portfolio's {total} trades "
                               "(0 <= trade_start < trade_stop <= trades)")
        return inputs, 0, total
    books = []
    for b in inputs.books:
        lo, hi = max(start, b.start) - b.start, min(stop, b.start + b.rows) - b.start
        if lo >= hi:
            continue
        n = b.rows
        m = b.market.inline
        inline = dataclasses.replace(m, **{f.name: _rows(getattr(m, f.name), lo, hi, n)
                                           for f in dataclasses.fields(m) if f.name != "cash_dividends"})
        books.append(Book(b.spec, b.batch.rows(lo, hi), dataclasses.replace(b.market, inline=inline), hi - lo,
                          b.fields, _rows(b.quantity, lo, hi, n), b.settings, b.threads, b.start + lo - start))
    tags = {k: v[start:stop] if len(v) == total and total != 1 else v for k, v in inputs.tags.items()}
    return PortfolioInputs(books, stop - start, inputs.trade_ids[start:stop], tags, inputs.portfolio_id), start, total


def lookup(stored, key: str, path: str, what: str = "portfolio"):
    if stored is None:
        raise ServiceError(Code.UNIMPLEMENTED, f"this server stores no {what}s")
    record = stored(key)
    if record is None:
        raise invalid(path, f"no {what} {key!r} is stored (by name or id)", code=Code.NOT_FOUND)
    return record


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def aggregate_tags(inputs: PortfolioInputs, aggregate_by, bad: Violations) -> list:
    """(name, one value per trade or one) of the tags to aggregate by, in order."""
    out, seen = [], set()
    for j, name in enumerate(aggregate_by):
        if name in seen:
            bad.add(f"aggregate_by[{j}]", f"{name!r} repeats")
        elif name in inputs.bad_tags and name not in inputs.tags:
            seen.add(name)  # its own violation names it: a check that needs it is skipped
        elif name not in inputs.tags:
            bad.add(f"aggregate_by[{j}]", f"no tag {name!r}; the tags are {sorted(inputs.tags)}")
        else:
            seen.add(name)
            values = inputs.tags[name]
            missing = np.flatnonzero(values == None) if len(values) == inputs.rows else []  # noqa: E711
            if len(missing):
                book = next(i for i, b in enumerate(inputs.books) if b.start <= missing[0] < b.start + b.rows)
                bad.add(f"aggregate_by[{j}]", f"{name!r} is not given for the trades of book {book}")
            else:
                out.append((name, values))
    return out


# ---------------------------------------------------------------------- stored portfolios
def put_portfolio(request: rpb.PutPortfolioRequest, service: PricingService, store: pf.PortfolioStore,
                  now: Callable[[], dt.datetime]) -> rpb.PutPortfolioResponse:
    bad = Violations()
    with bad.check():
        pf.check_name(request.name)
    if len(request.description) > 4096:
        bad.add("description", "at most 4,096 characters")
    # checked as a run reads it; a book may leave its snapshot out (a run names it)
    check = rpb.Portfolio()
    check.CopyFrom(request.portfolio)
    for b in check.books:
        if not b.trades.market.snapshot_id:
            b.trades.market.snapshot_id = "(run's snapshot)"
    inputs = _books(check, "portfolio", "", service, bad)
    if inputs is not None:
        _unique_ids(inputs, "portfolio.books", bad)
    bad.raise_if_any()
    content = request.portfolio.SerializeToString(deterministic=True)
    if len(content) > pf.MAX_PORTFOLIO_BYTES:
        raise invalid("portfolio", f"{len(content):,} bytes; at most {pf.MAX_PORTFOLIO_BYTES:,}",
                      code=Code.RESOURCE_EXHAUSTED)
    record = pf.StoredPortfolio(pf.content_id(request.name, content), request.name, request.description, now(),
                                len(request.portfolio.books), inputs.rows, content)
    created = store.put_portfolio(record)
    if not created:
        record = store.get_portfolio(record.portfolio_id) or record
    return rpb.PutPortfolioResponse(portfolio=stored_message(record, with_content=False), created=created)


def stored_message(record: pf.StoredPortfolio, *, with_content: bool) -> rpb.StoredPortfolio:
    msg = rpb.StoredPortfolio(id=record.portfolio_id, name=record.name, description=record.description,
                              stored_at=rfc3339(record.stored_at),
                              books=record.books, trades=record.trades)
    if with_content and record.content is not None:
        msg.portfolio.ParseFromString(record.content)
    return msg


def finder(by_id, newest_by_name) -> Callable[[str], Optional[object]]:
    """Look a stored item up by id, else by name (its newest version)."""
    def find(key: str):
        if not key:
            return None
        return by_id(key) or newest_by_name(key)
    return find


def list_portfolios(request: rpb.ListPortfoliosRequest, store: pf.PortfolioStore) -> rpb.ListPortfoliosResponse:
    limit = request.limit or 100
    if not 1 <= limit <= 1000:
        raise invalid("limit", f"1-1000 (got {request.limit})")
    return rpb.ListPortfoliosResponse(portfolios=[stored_message(r, with_content=False)
                                                  for r in store.list_portfolios(request.name, limit)])
