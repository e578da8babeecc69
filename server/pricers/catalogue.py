"""Every engine the server prices with: the catalogue (data) and the runner of each row.

Importing this module imports every module of this package once (one module per engine,
named method + model + instrument), and each adds its rows through
:mod:`pricegrid.server.pricers._registry`: a new engine is a new module here, and nothing
else in this package changes. Modules are imported in name order, which is the order of
ServerInfo's list.
"""

from __future__ import annotations

import importlib
import pkgutil

import pricegrid.server.pricers as _package
from pricegrid.server.pricers._registry import CATALOGUE, cube_runner, runner

__all__ = ["CATALOGUE", "cube_runner", "runner", "MODULES"]

#: the pricer modules, by name (each registered its engines, if it has any, on import)
MODULES = {
    info.name: importlib.import_module(f"{_package.__name__}.{info.name}")
    for info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda i: i.name)
    if not info.name.startswith("_") and info.name != "catalogue"
}
