"""The exact Taylor engine (forward Taylor mode) and the independent complex-step engine."""

from discovery.engine.expansion import Expansion, UnmixedExpansion, expand
from discovery.engine.polynomial import monomials, n_terms, shift_coefficients
from discovery.engine.rules import REGISTRY, register_rule

__all__ = [
    "Expansion",
    "REGISTRY",
    "UnmixedExpansion",
    "expand",
    "monomials",
    "n_terms",
    "register_rule",
    "shift_coefficients",
]
