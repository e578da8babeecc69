"""Tables that mirror the contract or the kernels' header have one source and cannot drift.

The domain (stdlib and numpy only) holds enums with the contract's numbers, the products'
inputs with the proto fields' names, and the kernels' status bits are mirrored from
ext/pg_status.h. These tests fail as soon as either side changes without the other.
"""

import re
from pathlib import Path

import pytest

import pricegrid.ext
from pricegrid.ext import status as st
from pricegrid.ext import surfaces as sf
from pricegrid.server.domain import backtest, daycount, instruments, models, products
from pricegrid.server.domain.surfaces import StrikeAxis
from pricegrid.server.rpc import market as rpc_market
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import risk_pb2 as rpb

_PREFIX = re.compile(r"(?<!^)(?=[A-Z])")


def _proto_values(enum_name: str, file=cpb) -> dict[str, int]:
    desc = file.DESCRIPTOR.enum_types_by_name[enum_name]
    prefix = _PREFIX.sub("_", enum_name).upper() + "_"
    return {v.name.removeprefix(prefix): v.number for v in desc.values if v.number != 0}


@pytest.mark.parametrize(
    "domain_enum, proto_enum",
    [
        (models.Model, "Model"),
        (models.Engine, "Engine"),
        (models.GreekMethod, "GreekMethod"),
        (models.Measure, "Measure"),
        (instruments.OptionType, "OptionType"),
        (daycount.DayCount, "DayCount"),
    ],
)
def test_domain_enums_are_the_contracts(domain_enum, proto_enum):
    ours = {m.name: int(m) for m in domain_enum if int(m) != 0}
    assert ours == _proto_values(proto_enum)


@pytest.mark.parametrize("domain_enum, proto_enum", [
    (backtest.VarConvention, "VarConvention"),
    (backtest.StatisticStatus, "StatisticStatus"),
    (backtest.Zone, "TrafficLightZone"),
])
def test_backtest_enums_are_the_contracts(domain_enum, proto_enum):
    ours = {m.name: int(m) for m in domain_enum if int(m) != 0}
    assert ours == _proto_values(proto_enum, rpb)


def test_strike_axes_are_the_contracts_and_the_kernels():
    """StrikeAxis: the domain's names and numbers are the contract's (STRIKE_AXIS_DELTA = 4
    included), the kernel's codes are the same numbers, and the transport reads every one."""
    ours = {m.name: int(m) for m in StrikeAxis}
    assert ours == _proto_values("StrikeAxis", mpb)
    assert ours["DELTA"] == mpb.STRIKE_AXIS_DELTA == sf.DELTA == 4
    assert {a.name: getattr(sf, a.name) for a in StrikeAxis} == ours and set(sf.AXES) == set(ours.values())
    assert rpc_market._AXES == {int(a): a for a in StrikeAxis}


def test_every_code_input_takes_exactly_its_enums_values():
    for product in products.PRODUCTS.values():
        for inp in product.code_inputs:
            assert set(inp.codes) == set(_proto_values(inp.enum).values()), (product.name, inp.name)


_MESSAGES = {
    "european": ("EuropeanOption", "EuropeanOptionColumns"),
    "american": ("AmericanOption", "AmericanOptionColumns"),
    "barrier": ("BarrierOption", "BarrierOptionColumns"),
    "double_barrier": ("DoubleBarrierOption", "DoubleBarrierOptionColumns"),
    "digital": ("DigitalOption", "DigitalOptionColumns"),
    "touch": ("TouchOption", "TouchOptionColumns"),
    "asian": ("AsianOption", "AsianOptionColumns"),
    "lookback": ("LookbackOption", "LookbackOptionColumns"),
}


def test_every_product_is_a_oneof_member_of_both_request_shapes():
    one = {f.name for f in pb.PriceRequest.DESCRIPTOR.oneofs_by_name["instrument"].fields}
    batch = {f.name for f in pb.PriceBatchRequest.DESCRIPTOR.oneofs_by_name["instruments"].fields}
    assert set(products.PRODUCTS) <= one
    assert set(products.PRODUCTS) <= batch
    assert set(_MESSAGES) == set(products.PRODUCTS)


@pytest.mark.parametrize("name", sorted(products.PRODUCTS))
def test_product_inputs_are_fields_of_the_same_name_and_type(name):
    product = products.PRODUCTS[name]
    trade, columns = (pb.DESCRIPTOR.message_types_by_name[m] for m in _MESSAGES[name])
    for inp in product.inputs:
        f = trade.fields_by_name.get(inp.name)
        c = columns.fields_by_name.get(inp.name)
        assert f is not None and c is not None, (name, inp.name)
        if inp.dtype == "f8":
            assert f.type == f.TYPE_DOUBLE and c.message_type.name == "DoubleColumn", (name, inp.name)
        else:
            assert f.type in (f.TYPE_ENUM, f.TYPE_INT32, f.TYPE_UINT32), (name, inp.name)
            assert c.message_type.name == "Int32Column", (name, inp.name)
            if inp.enum:
                assert f.enum_type.name == inp.enum, (name, inp.name)


def test_kernel_status_bits_and_stop_block_mirror_the_headers():
    ext = Path(pricegrid.ext.__file__).parent
    header = (ext / "pg_status.h").read_text() + (ext / "pg_stop.h").read_text()
    defined = {
        m.group(1): eval(m.group(2))  # "(1 << 3)" or "0": integer arithmetic only
        for m in re.finditer(r"#define PG_([A-Z0-9_]+)\s+(\(1 << \d+\)|\d+)", header)
    }
    mirrored = {name: getattr(st, name) for name in st.__all__ if not name.startswith("FIELD")}
    assert defined == mirrored
    assert set(st.FIELD_OF_BIT) <= {v for k, v in defined.items() if k.startswith(("BAD_", "PRICE_OUT", "NOT_"))}


def test_the_typed_greeks_are_the_option_measures_of_the_same_table():
    """PriceResponse.greeks repeats the option measures (plus two unit conversions) for
    front-office readers: its fields are the Measure names, nothing else."""
    fields = [f.name for f in pb.Greeks.DESCRIPTOR.fields]
    derived = [m.name.lower() for m in models.GREEKS]
    assert [f for f in fields if f not in ("vega_per_point", "theta_per_day")] == derived
    assert models.OPTION_MEASURES == (models.Measure.PRICE, *models.GREEKS)
