"""Explaining trained networks: HOPE heat maps, CAFO/CASO interpretations, structure tests."""

from discovery.interpret.saliency import (
    Interpretation,
    cafo,
    caso,
    relu_input_hessian,
    solve_interpretation,
    soft_threshold,
)

__all__ = [
    "Interpretation",
    "cafo",
    "caso",
    "relu_input_hessian",
    "solve_interpretation",
    "soft_threshold",
]
