"""Imports every built-in scorer module so that each registers itself."""
from __future__ import annotations

from latnas.search.scorers import flops as _flops  # noqa: F401
from latnas.search.scorers import naswot as _naswot  # noqa: F401
from latnas.search.scorers import params as _params  # noqa: F401
from latnas.search.scorers import rwe as _rwe  # noqa: F401
from latnas.search.scorers import supernet as _supernet  # noqa: F401
from latnas.search.scorers import synflow as _synflow  # noqa: F401
from latnas.search.scorers import table as _table  # noqa: F401
from latnas.search.scorers import vote as _vote  # noqa: F401
