"""The clients layer imports only the contract, grpc and numpy (DESIGN.md, "The layers")."""

import ast
import subprocess
import sys
from pathlib import Path

import pricegrid.clients

CLIENTS = Path(pricegrid.clients.__file__).parent


def test_no_module_imports_the_server_or_the_kernels():
    offenders = []
    for path in sorted(CLIENTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [(path.name, n) for n in names if n.startswith(("pricegrid.server", "pricegrid.ext"))]
    assert offenders == []


def test_importing_every_client_module_loads_neither_server_nor_kernels():
    modules = [f"pricegrid.clients.{p.stem}" for p in sorted(CLIENTS.glob("*.py")) if p.stem != "__init__"]
    code = (
        "import sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('pricegrid.server', 'pricegrid.ext')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
