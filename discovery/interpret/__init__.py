"""Explaining trained networks: HOPE heat maps, CAFO/CASO interpretations, structure tests."""

from discovery.interpret.saliency import (
    Interpretation,
    cafo,
    caso,
    relu_input_hessian,
    solve_interpretation,
    soft_threshold,
)
from discovery.interpret.structure import (
    StructureReport,
    additive_separability,
    log_hessian,
    multiplicative_separability,
    unused_variables,
)

__all__ = [
    "StructureReport",
    "additive_separability",
    "log_hessian",
    "multiplicative_separability",
    "unused_variables",
    "Interpretation",
    "cafo",
    "caso",
    "relu_input_hessian",
    "solve_interpretation",
    "soft_threshold",
]
