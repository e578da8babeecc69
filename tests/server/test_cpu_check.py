"""The start-up CPU check: the features the build may use are recorded, present on the
machine that built them, and a machine without one is refused with its name."""

from __future__ import annotations

import pytest

from pricegrid.ext import BUILD_INFO
from pricegrid.server.app import cpu
from pricegrid.server.app.server import StartError, start
from pricegrid.server.app.settings import Settings


def test_the_build_records_its_cpu_features_and_this_machine_has_them():
    features = BUILD_INFO["cpu_features"]
    if BUILD_INFO["cpu_target"] in ("native", "x86-64-v3"):  # gcc on x86-64 says what -march enables
        assert {"sse2", "avx", "avx2", "fma"} <= set(features)
    machine = cpu.machine_features()
    assert machine is None or cpu.missing(features, machine) == []
    assert cpu.check(BUILD_INFO) is None


def test_a_machine_without_a_feature_is_refused_by_name(tmp_path):
    info = {"cpu_target": "native", "cpu_features": ["avx2", "avx512f", "sse2"]}
    why = cpu.check(info, available={"sse2", "avx", "avx2", "fma"})
    assert why is not None and "avx512f" in why and "avx2," not in why and "PRICEGRID_CPU_TARGET=x86-64-v3" in why
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2\n")
    assert cpu.machine_features(cpuinfo) == {"fpu", "sse2", "avx", "avx2"}
    assert cpu.machine_features(tmp_path / "absent") is None


def test_the_server_refuses_to_start_on_such_a_machine(monkeypatch):
    monkeypatch.setitem(BUILD_INFO, "cpu_features", [*BUILD_INFO["cpu_features"], "no_such_cpu_feature"])
    with pytest.raises(StartError, match="no_such_cpu_feature"):
        start(Settings(host="127.0.0.1", port=0, metrics_port=-1, store=":memory:"))
