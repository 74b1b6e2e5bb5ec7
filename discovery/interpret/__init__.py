"""Explaining trained networks: HOPE heat maps, CAFO/CASO interpretations, structure tests."""

from discovery.interpret.heatmaps import (
    backward_unmixed,
    heatmap_correlation,
    hope_heatmap,
    hope_heatmap_from,
    perturbation_heatmap,
)
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
    affine_variables,
    log_hessian,
    multiplicative_separability,
    original_units,
    unused_variables,
)
from discovery.interpret.symmetry import (
    depends_through,
    homogeneity,
    pair_symmetry,
    polynomial_transforms,
    symmetries,
)

__all__ = [
    "backward_unmixed",
    "heatmap_correlation",
    "hope_heatmap",
    "hope_heatmap_from",
    "perturbation_heatmap",
    "StructureReport",
    "additive_separability",
    "affine_variables",
    "log_hessian",
    "multiplicative_separability",
    "unused_variables",
    "original_units",
    "depends_through",
    "homogeneity",
    "pair_symmetry",
    "polynomial_transforms",
    "symmetries",
    "Interpretation",
    "cafo",
    "caso",
    "relu_input_hessian",
    "solve_interpretation",
    "soft_threshold",
]
