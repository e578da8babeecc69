"""The kernels' per-row status bits, for the layers above the pricers.

The service turns these bits into row errors naming the caller's fields; it never imports a
kernel, so it reads them here. One source: ``pricegrid.ext.status`` (the mirror of
ext/pg_status.h, checked against the header by tests/ext).
"""

from pricegrid.ext.status import *  # noqa: F401,F403
from pricegrid.ext.status import FIELD_OF_BIT  # noqa: F401
