"""discovery: find the formula behind tabular data.

Public names are re-exported here; implementation modules are private.
"""

from discovery.errors import (
    DataError,
    DiscoveryError,
    ExpansionError,
    ModelLoadError,
    UnsupportedLayerError,
)

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "DiscoveryError",
    "ExpansionError",
    "ModelLoadError",
    "UnsupportedLayerError",
    "__version__",
]
