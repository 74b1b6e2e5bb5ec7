"""The exact Taylor engine (forward Taylor mode) and the independent complex-step engine."""

from discovery.engine.polynomial import monomials, n_terms, shift_coefficients

__all__ = ["monomials", "n_terms", "shift_coefficients"]
