"""pricegrid.ext: the Cython kernels, arrays in and arrays out.

One extension module per model family (``black``, ``implied_vol``, ...); the per-row status
bits they share are in :mod:`pricegrid.ext.status`; the flags they were compiled with are in
:data:`BUILD_INFO`.
"""

try:
    from pricegrid.ext._build_info import BUILD_INFO
except ImportError:  # pragma: no cover - only in a tree that was never built
    BUILD_INFO = {}

__all__ = ["BUILD_INFO"]
