"""The v1 contract, linted and checked for breaking changes with buf (the buf-bin package).

``buf lint`` applies buf's STANDARD rules (proto/buf.yaml says which exceptions and why);
``buf breaking`` compares the contract with proto/breaking-baseline.json, the image of the
contract as last agreed. A change that breaks a field number, a name or a type fails here;
before the first release an intended reshaping refreshes the baseline in the same commit:

    cd proto && buf build --exclude-source-info -o breaking-baseline.json
"""

import subprocess
import sys
from pathlib import Path

import pytest

PROTO = Path(__file__).resolve().parents[2] / "proto"
BUF = Path(sys.executable).parent / "buf"


def _buf(*args):
    if not BUF.exists():
        pytest.fail(f"{BUF} missing: install the test extras ('.[test]')")
    return subprocess.run([str(BUF), *args], cwd=PROTO, capture_output=True, text=True, timeout=120)


def test_the_contract_passes_buf_lint():
    out = _buf("lint")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_contract_has_no_breaking_change_against_its_baseline():
    out = _buf("breaking", "--against", "breaking-baseline.json")
    assert out.returncode == 0, out.stdout + out.stderr


def test_buf_breaking_catches_a_renumbered_field(tmp_path):
    """The check can fail: the baseline against a copy of the contract with one field moved."""
    work = tmp_path / "proto"
    (work / "pricegrid" / "v1").mkdir(parents=True)
    (work / "buf.yaml").write_text((PROTO / "buf.yaml").read_text())
    for f in (PROTO / "pricegrid" / "v1").glob("*.proto"):
        text = f.read_text()
        if f.name == "pricing.proto":
            assert "double strike = 2;" in text
            text = text.replace("double strike = 2;", "double strike = 99;", 1)
        (work / "pricegrid" / "v1" / f.name).write_text(text)
    out = subprocess.run([str(BUF), "breaking", "--against", str(PROTO / "breaking-baseline.json")], cwd=work,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "strike" in out.stdout
