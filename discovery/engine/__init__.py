"""The exact Taylor engine (forward Taylor mode) and the independent complex-step engine."""

from discovery.engine import rules as _rules  # noqa: F401  (registers the built-in rules)
from discovery.engine.expansion import Expansion, UnmixedExpansion, expand
from discovery.engine.polynomial import monomials, n_terms, shift_coefficients
from discovery.engine.registry import (
    ALIASES,
    REGISTRY,
    forms_of,
    register_alias,
    register_rule,
    unregister_rule,
)

__all__ = [
    "ALIASES",
    "Expansion",
    "REGISTRY",
    "UnmixedExpansion",
    "expand",
    "forms_of",
    "monomials",
    "n_terms",
    "register_alias",
    "register_rule",
    "shift_coefficients",
    "unregister_rule",
]
