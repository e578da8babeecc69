"""Volatility surfaces: construction, immutability and validate() (every violation, with
field and index).

The checks are also compared with the kernel's validate on random corrupted surfaces in
tests/ext/test_surfaces_kernel.py; this module needs neither the kernels nor QuantLib.
"""

from __future__ import annotations

import numpy as np
import pytest

from pricegrid.server.domain.errors import FieldViolation
from pricegrid.server.domain.surfaces import (
    GridInterpolation,
    GridSurface,
    SabrSurface,
    StrikeAxis,
    SurfaceKind,
    SviSurface,
    TimeInterpolation,
)


def grid(**overrides) -> GridSurface:
    args = dict(surface_id="SPX-2025-01-15", underlying_id="SPX", expiries=[0.25, 0.5, 1.0],
                axis=StrikeAxis.MONEYNESS, nodes=[0.8, 0.9, 1.0, 1.1, 1.2],
                vols=[[0.30, 0.25, 0.20, 0.18, 0.19], [0.28, 0.24, 0.20, 0.185, 0.19], [0.27, 0.235, 0.205, 0.19, 0.195]])
    args.update(overrides)
    return GridSurface(**args)


def svi(**overrides) -> SviSurface:
    args = dict(surface_id="SPX-SVI", underlying_id="SPX", expiries=[0.5, 1.0],
                params=[[0.02, 0.1, -0.5, 0.0, 0.2], [0.04, 0.1, -0.5, 0.0, 0.2]])
    args.update(overrides)
    return SviSurface(**args)


def sabr(**overrides) -> SabrSurface:
    args = dict(surface_id="EUR-SABR", underlying_id="EURIBOR6M", expiries=[1.0, 2.0],
                params=[[0.03, 0.5, -0.2, 0.4], [0.031, 0.5, -0.25, 0.35]])
    args.update(overrides)
    return SabrSurface(**args)


def test_defaults_coercion_and_rules():
    g = grid()
    assert g.validate() == [] and g.kind is SurfaceKind.GRID and g.size == 3
    assert g.interpolation is GridInterpolation.LINEAR_TOTAL_VARIANCE
    assert g.time_interpolation is TimeInterpolation.LINEAR_TOTAL_VARIANCE_FLAT_VOL
    assert g.vols.dtype == np.float64 and g.vols.shape == (3, 5)
    assert grid(axis=3, nodes=[-0.2, -0.1, 0.0, 0.1, 0.2]).axis is StrikeAxis.LOG_MONEYNESS
    assert grid(interpolation="linear_total_variance").interpolation is GridInterpolation.LINEAR_TOTAL_VARIANCE
    assert svi().validate() == [] and svi().kind is SurfaceKind.SVI and svi().columns == ("a", "b", "rho", "m", "sigma")
    assert sabr().validate() == [] and sabr().kind is SurfaceKind.SABR


def test_frozen_and_arrays_copied_read_only():
    vols = np.full((1, 2), 0.2)
    g = grid(expiries=[1.0], nodes=[90.0, 110.0], axis=StrikeAxis.STRIKE, vols=vols)
    vols[0, 0] = 9.0
    assert g.vols[0, 0] == 0.2
    with pytest.raises(ValueError):
        g.vols[0, 0] = 1.0
    with pytest.raises(ValueError):
        svi().params[0, 0] = 1.0
    with pytest.raises(AttributeError):
        g.underlying_id = "NDX"  # type: ignore[misc]


def test_every_grid_violation_with_field_and_index():
    g = grid(expiries=[0.5, 0.5, 0.25], nodes=[0.8, 0.8, np.nan, -1.0, 1.2],
             vols=[[0.2, np.nan, 0.2, 0.2, 0.2], [0.2, 0.2, 0.0, 0.2, 0.2], [0.2, 0.2, 0.2, -0.1, 1e200]])
    assert g.validate() == [
        FieldViolation("expiries[1]", "equal to the previous expiry"),
        FieldViolation("expiries[2]", "below the previous expiry"),
        FieldViolation("nodes[1]", "equal to the previous node"),
        FieldViolation("nodes[2]", "not finite"),
        FieldViolation("nodes[3]", "not > 0"),
        FieldViolation("vols[0][1]", "not finite (a hole in the grid)"),
        FieldViolation("vols[1][2]", "not > 0"),
        FieldViolation("vols[2][3]", "not > 0"),
        FieldViolation("vols[2][4]", "vol^2 T overflows"),
    ]
    # log-moneyness nodes may be negative, never unsorted
    assert grid(axis=StrikeAxis.LOG_MONEYNESS, nodes=[-0.2, -0.1, 0.0, 0.1, 0.2]).validate() == []
    assert [v.field for v in grid(axis=StrikeAxis.LOG_MONEYNESS, nodes=[-0.2, -0.3, 0.0, 0.1, 0.2]).validate()] \
        == ["nodes[1]"]
    assert [v.field for v in grid(expiries=[-0.1, np.inf, 1.0]).validate()] == ["expiries[0]", "expiries[1]"]


def test_delta_grid_nodes_and_crossing_strikes():
    """Forward call deltas in (0, 1), decreasing (increasing strike); vols whose converted
    ln(K/F) = sd (sd/2 - N^-1(delta)) do not increase along a slice name the later vol."""
    fx = grid(axis=StrikeAxis.DELTA, nodes=[0.9, 0.75, 0.5, 0.25, 0.1])
    assert fx.validate() == [] and grid(axis=4, nodes=[0.9, 0.75, 0.5, 0.25, 0.1]).axis is StrikeAxis.DELTA
    bad = grid(axis=StrikeAxis.DELTA, expiries=[1.0], nodes=[0.9, 1.0, 0.5, 0.5, 0.7, 0.0, np.nan],
               vols=[[0.2] * 7])
    assert bad.validate() == [
        FieldViolation("nodes[1]", "outside (0, 1): a forward call delta"),
        FieldViolation("nodes[1]", "above the previous node (delta nodes decrease: strikes increase)"),
        FieldViolation("nodes[3]", "equal to the previous node"),
        FieldViolation("nodes[4]", "above the previous node (delta nodes decrease: strikes increase)"),
        FieldViolation("nodes[5]", "outside (0, 1): a forward call delta"),
        FieldViolation("nodes[6]", "not finite"),
    ]
    # increasing deltas (decreasing strikes) are refused, naming each node
    assert [v.field for v in grid(axis=StrikeAxis.DELTA, nodes=[0.1, 0.25, 0.5, 0.75, 0.9]).validate()] \
        == ["nodes[1]", "nodes[2]", "nodes[3]", "nodes[4]"]
    # deltas 0.3 and 0.25 at vols 0.8 and 0.2, T = 1: ln(K/F) 0.7395 then 0.1549, the strikes cross
    crossing = grid(axis=StrikeAxis.DELTA, expiries=[1.0, 2.0], nodes=[0.3, 0.25, 0.1],
                    vols=[[0.8, 0.2, 0.2], [0.2, 0.2, 0.2]])
    [v] = crossing.validate()
    assert v.field == "vols[0][1]" and v.description.startswith("strikes cross: at expiry 0 delta nodes 0 and 1")
    assert "ln(K/F) = 0.73952 and 0.154898" in v.description
    # a pair with a bad member is not compared; one node cannot cross
    assert [v.field for v in grid(axis=StrikeAxis.DELTA, expiries=[1.0], nodes=[0.3, 0.25, 0.1],
                                  vols=[[0.8, np.nan, 0.2]]).validate()] == ["vols[0][1]"]
    assert grid(axis=StrikeAxis.DELTA, expiries=[1.0], nodes=[0.5], vols=[[0.2]]).validate() == []


def test_grid_shape_and_surface_level_violations():
    g = GridSurface("", " ", [], axis=9, nodes=[], vols=[], interpolation="cubic")
    assert [v.field for v in g.validate()] == ["surface_id", "underlying_id", "expiries", "axis", "interpolation"]
    assert [v.field for v in grid(nodes=[]).validate()] == ["nodes"]
    assert [v.field for v in grid(vols=[[0.2] * 5] * 2).validate()] == ["vols"]
    assert [v.field for v in grid(vols=[[0.2] * 4] * 3).validate()] == ["vols"]
    assert [v.field for v in grid(expiries=[[0.5, 1.0]]).validate()] == ["expiries"]
    assert grid(vols=[["a"] * 5] * 3).validate()[0] == FieldViolation(
        "expiries", "expiries and slice values must be numbers")


def test_every_svi_violation_with_field_and_index():
    s = svi(expiries=[0.5, 1.0, 2.0, 3.0],
            params=[[0.02, -0.1, 1.0, 0.0, 0.0],           # b < 0, |rho| = 1, sigma = 0
                    [-0.05, 0.1, 0.0, 0.0, 0.2],           # a + b sigma sqrt(1 - rho^2) = -0.03
                    [0.01, 3.5, 0.2, 0.0, 0.2],            # b (1 + |rho|) = 4.2
                    [np.nan, 0.1, 0.0, np.inf, 0.2]])
    assert s.validate() == [
        FieldViolation("params[0].b", "b < 0"),
        FieldViolation("params[0].rho", "|rho| >= 1"),
        FieldViolation("params[0].sigma", "not > 0"),
        FieldViolation("params[1].a", "a + b sigma sqrt(1 - rho^2) < 0 (negative total variance)"),
        FieldViolation("params[2].b", "b (1 + |rho|) > 4 (wing slope)"),
        FieldViolation("params[3].a", "not finite"),
        FieldViolation("params[3].m", "not finite"),
    ]
    # the bounds themselves are allowed: w_min = 0, b (1 + |rho|) = 4, b = 0
    edge = svi(expiries=[1.0, 2.0, 3.0], params=[[-0.1 * 0.2, 0.1, 0.0, 0.0, 0.2], [0.0, 2.0, 1.0 - 2 ** -52, 0.0, 0.1],
                                                 [0.04, 0.0, 0.0, 0.0, 0.1]])
    assert edge.validate() == []
    assert [v.field for v in svi(params=[[0.02, 0.1, -0.5, 0.0, 0.2]]).validate()] == ["params"]
    assert [v.field for v in svi(params=[[0.02, 0.1, -0.5, 0.0]] * 2).validate()] == ["params"]


def test_every_sabr_violation_with_field_and_index():
    s = sabr(expiries=[1.0, 2.0, 3.0],
             params=[[0.0, 1.5, 1.0, -0.1], [0.03, -0.1, -1.0, 0.0], [np.inf, 0.5, np.nan, 0.4]])
    assert s.validate() == [
        FieldViolation("params[0].alpha", "not > 0"),
        FieldViolation("params[0].beta", "outside [0, 1]"),
        FieldViolation("params[0].rho", "|rho| >= 1"),
        FieldViolation("params[0].nu", "nu < 0"),
        FieldViolation("params[1].beta", "outside [0, 1]"),
        FieldViolation("params[1].rho", "|rho| >= 1"),
        FieldViolation("params[2].alpha", "not finite"),
        FieldViolation("params[2].rho", "not finite"),
    ]
    assert sabr(params=[[0.03, 0.0, 0.0, 0.0], [0.03, 1.0, 0.999, 2.0]]).validate() == []
    assert [v.field for v in sabr(params=[[0.03, 0.5, 0.0, 0.4]] * 3).validate()] == ["params"]
    assert [v.field for v in SabrSurface("", "U", [1.0, 0.5], [[0.03, 0.5, 0.0, 0.4]] * 2).validate()] \
        == ["surface_id", "expiries[1]"]
