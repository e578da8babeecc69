"""Packaging: the wheel installs one import root, ``pricegrid``, in a clean virtual environment.

Builds the wheel from this checkout (with build isolation, as a user's ``pip install`` would),
installs it into a fresh venv, and checks the import names there, from a folder outside the
checkout so that nothing in it can shadow the installed package.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib, json, sys
mods = ["pricegrid.server.app.server", "pricegrid.server.rpc.servicers", "pricegrid.ext.black",
        "pricegrid.ext.implied_vol", "pricegrid.ext.status", "pricegrid.clients", "pricegrid.v1.pricing_pb2",
        "pricegrid.v1.pricing_pb2_grpc", "pricegrid.v1.common_pb2", "pricegrid.v1.echo_pb2_grpc",
        "pricegrid.console", "pricegrid.tools.bench"]
for m in mods:
    importlib.import_module(m)
absent = []
for top in ("server", "clients", "ext", "v1", "proto", "console", "tools"):
    try:
        importlib.import_module(top)
    except ImportError:
        absent.append(top)
import pricegrid.ext as e
print(json.dumps({"absent": absent, "build": e.BUILD_INFO.get("cpu_target")}))
"""


@pytest.mark.slow
def test_wheel_installs_only_the_pricegrid_namespace(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True, timeout=900,
    )
    (wheel,) = wheels.glob("pricegrid-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"pricegrid", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".c", ".pyx"))], "sources of the kernels leaked into the wheel"
    assert any(n.startswith("pricegrid/v1/pricing_pb2") and n.endswith(".pyi") for n in names)
    assert any(n.startswith("pricegrid/v1/pricing_pb2_grpc") and n.endswith(".pyi") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    out = subprocess.run([str(py), "-c", CHECK], check=True, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["absent"] == ["server", "clients", "ext", "v1", "proto", "console", "tools"]
    assert result["build"]
    script = venv / "bin" / "pricegrid"
    assert script.exists()
    help_text = subprocess.run([str(script), "serve", "--help"], capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "--max-rows" in help_text.stdout
