"""Cross-check formulas against symbolic-regression engines (Operon always; PySR where Julia
works; gplearn as a pure-Python fallback), with one candidates table shaped like PySR's
``equations_`` for every engine.

Engines are imported lazily: importing this package imports neither ``pyoperon`` nor ``pysr``.
"""

from discovery.crosscheck.base import Search, candidates_table, complexity, evaluate, finish, polish, select_best
from discovery.crosscheck.compare import ENGINES, Comparison, Guide, compare, guide_from_formula, run_engine
from discovery.crosscheck.equivalence import AGREE, DISAGREE, UP_TO_CONSTANTS, Equivalence, equivalence
from discovery.crosscheck.pysr import pysr_available, pysr_status, read_hall_of_fame

__all__ = [
    "compare",
    "Comparison",
    "Guide",
    "guide_from_formula",
    "run_engine",
    "ENGINES",
    "equivalence",
    "Equivalence",
    "AGREE",
    "UP_TO_CONSTANTS",
    "DISAGREE",
    "Search",
    "candidates_table",
    "complexity",
    "evaluate",
    "finish",
    "polish",
    "select_best",
    "pysr_status",
    "pysr_available",
    "read_hall_of_fame",
]
