"""The exception types users of :mod:`discovery` catch."""

from __future__ import annotations

__all__ = [
    "DiscoveryError",
    "DataError",
    "ExpansionError",
    "UnsupportedLayerError",
    "ModelLoadError",
    "CrosscheckError",
    "DiscoveryWarning",
]


class DiscoveryError(Exception):
    """Base class of every error raised on purpose by :mod:`discovery`."""


class DataError(DiscoveryError, ValueError):
    """The input table cannot be used as it is; the message says what to change."""


class ExpansionError(DiscoveryError, ValueError):
    """``expand`` was called with arguments it cannot work with."""


class UnsupportedLayerError(ExpansionError):
    """The model contains an operation the Taylor engine has no rule for."""


class ModelLoadError(DiscoveryError, ValueError):
    """A file given as a model is not a model ``discovery`` can load."""


class CrosscheckError(DiscoveryError, RuntimeError):
    """A symbolic-regression backend is missing or failed."""


class DiscoveryWarning(UserWarning):
    """A result that should not be trusted as it stands: no cross-check ran, the formula only
    approximates, scores no better than a constant, a defaulted target. ``Discovery.warnings``
    lists the same messages."""
