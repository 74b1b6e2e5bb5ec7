"""discovery: find the formula behind tabular data.

Public names are re-exported here; implementation modules are private.
"""

from discovery.engine import Expansion, UnmixedExpansion, expand, register_rule
from discovery.errors import (
    DataError,
    DiscoveryError,
    ExpansionError,
    ModelLoadError,
    UnsupportedLayerError,
)

__version__ = "0.1.0"

__all__ = [
    "Expansion",
    "UnmixedExpansion",
    "expand",
    "register_rule",
    "DataError",
    "DiscoveryError",
    "ExpansionError",
    "ModelLoadError",
    "UnsupportedLayerError",
    "__version__",
]
