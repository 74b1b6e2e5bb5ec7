"""discovery: find the formula behind tabular data.

Train small networks on observations, expand them exactly into Taylor polynomials at many
reference points (the HOPE method, exact for any depth), merge the local polynomials into one
global formula, and cross-check it with symbolic regression.

Main entry points:

- :func:`discover` -- from a CSV file or DataFrame to a :class:`Discovery` (formula, LaTeX,
  scores, report);
- :func:`discover_many` -- many ``discover`` calls on Dask (a local cluster or any scheduler),
  one table row per job;
- :class:`DiscoveryRegressor` -- the same as a scikit-learn estimator;
- :func:`expand` -- exact Taylor expansion of any traced PyTorch network;
- :func:`validate` -- convergence table, error bounds and trust radius of a trained network;
- :func:`compare` -- cross-check two formulas or run a symbolic-regression engine.

PySR is never imported here; ``pyoperon`` is imported only when a cross-check runs.
"""

import importlib

from discovery.errors import (
    CrosscheckError,
    DataError,
    DiscoveryError,
    DiscoveryWarning,
    ExpansionError,
    ModelLoadError,
    UnsupportedLayerError,
)

# Public name -> module that defines it (no name here may equal a submodule's name, or importing
# that submodule would shadow it: ``merge()`` is ``discovery.merge.merge``). Loaded on first use, so ``import discovery`` (and the
# command line) stays quick and pulls in neither scikit-learn nor the cross-check engines.
_EXPORTS = {
    "discover": "discovery.pipeline",
    "discover_many": "discovery.many",
    "Discovery": "discovery.result",
    "check_output_folder": "discovery.folders",
    "DiscoveryRegressor": "discovery.estimator",
    "load_table": "discovery.data",
    "Table": "discovery.data",
    "DataWarning": "discovery.data",
    "bundled": "discovery.data",
    "list_bundled": "discovery.data",
    "fit_ensemble": "discovery.fit",
    "FittedEnsemble": "discovery.fit",
    "expand": "discovery.engine",
    "Expansion": "discovery.engine",
    "UnmixedExpansion": "discovery.engine",
    "register_rule": "discovery.engine",
    "csfd_derivative": "discovery.engine.csfd",
    "csfd_hvp": "discovery.engine.csfd",
    "csfd_laplacian": "discovery.engine.csfd",
    "polynomial_to_sympy": "discovery.symbolic",
    "to_original_units": "discovery.symbolic",
    "latex": "discovery.symbolic",
    "MergedFormula": "discovery.merge",
    "compare": "discovery.crosscheck",
    "Comparison": "discovery.crosscheck",
    "Guide": "discovery.crosscheck",
    "pysr_status": "discovery.crosscheck",
    "read_hall_of_fame": "discovery.crosscheck",
    "load_model": "discovery.modelio",
    "validate": "discovery.validation",
    "Validation": "discovery.validation",
    "convergence_table": "discovery.validation",
    "PolynomialModule": "discovery.surrogate",
    "to_numpy_function": "discovery.surrogate",
    "hope_heatmap": "discovery.interpret",
    "perturbation_heatmap": "discovery.interpret",
    "cafo": "discovery.interpret",
    "caso": "discovery.interpret",
    "relu_input_hessian": "discovery.interpret",
    "additive_separability": "discovery.interpret",
    "multiplicative_separability": "discovery.interpret",
    "unused_variables": "discovery.interpret",
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'discovery' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__version__ = "0.1.0"

__all__ = [
    # the main job
    "discover",
    "discover_many",
    "Discovery",
    "DiscoveryRegressor",
    # data
    "load_table",
    "Table",
    "DataWarning",
    "bundled",
    "list_bundled",
    "check_output_folder",
    # training
    "fit_ensemble",
    "FittedEnsemble",
    # the exact engine
    "expand",
    "Expansion",
    "UnmixedExpansion",
    "register_rule",
    "csfd_derivative",
    "csfd_hvp",
    "csfd_laplacian",
    # formulas
    "polynomial_to_sympy",
    "to_original_units",
    "latex",
    "MergedFormula",
    # cross-check
    "compare",
    "Comparison",
    "Guide",
    "pysr_status",
    "read_hall_of_fame",
    # trained networks
    "load_model",
    "validate",
    "Validation",
    "convergence_table",
    "PolynomialModule",
    "to_numpy_function",
    "hope_heatmap",
    "perturbation_heatmap",
    "cafo",
    "caso",
    "relu_input_hessian",
    "additive_separability",
    "multiplicative_separability",
    "unused_variables",
    # errors
    "DiscoveryError",
    "DataError",
    "ExpansionError",
    "UnsupportedLayerError",
    "ModelLoadError",
    "CrosscheckError",
    "DiscoveryWarning",
    "__version__",
]
