"""The layer table of DESIGN.md, enforced: import-linter's contracts in pyproject.toml.

Runs ``lint-imports`` over the installed package, so a wrong arrow anywhere (a servicer
importing a pricer, the service importing a kernel, the app importing a client) fails CI.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _contracts() -> list[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def test_every_layer_contract_is_kept():
    if not LINT.exists():
        pytest.fail(f"{LINT} missing: install the test extras ('.[test]')")
    out = subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in _contracts():
        assert f"{name} KEPT" in out.stdout, (name, out.stdout)


def test_the_contracts_cover_every_layer_of_the_table():
    """Each layer of DESIGN.md's table has a contract (a new layer needs its own)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    sources = {m for c in config["contracts"] for m in c["source_modules"]}
    assert sources >= {
        "pricegrid.server.domain", "pricegrid.server.pricers", "pricegrid.server.store", "pricegrid.server.service",
        "pricegrid.server.rpc",
        "pricegrid.server.app", "pricegrid.ext", "pricegrid.clients", "pricegrid.tools", "pricegrid.v1",
    }
