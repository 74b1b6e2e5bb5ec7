"""The record :func:`discovery.decompose.decompose` returns: its tree of steps and pieces, with their evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy

__all__ = ["Decomposition", "Node"]

#: Methods of :func:`discovery.leaf.polynomial_leaf`: fits that never judge their residuals, so never "exact".
_INEXACT = {"polynomial", "log-polynomial", "sqrt-polynomial", "reciprocal-polynomial", "reciprocal-sqrt-polynomial",
            "rational"}


@dataclass
class Node:
    """One step of the decomposition tree.

    ``test`` is ``"leaf"``, ``"unused"``, ``"symmetry"``, ``"homogeneity"``, ``"affine"``,
    ``"additive"`` or ``"multiplicative"``; ``evidence`` says what the statistic was;
    ``variables`` are the node's columns (as formulas in the user's names).
    """

    test: str
    evidence: str
    variables: list
    children: list = field(default_factory=list)
    method: str | None = None
    expression: str | None = None
    val_rmse: float | None = None
    #: other formulas the rows of a leaf or of a slice could not tell apart (the parent's rows decide)
    alternatives: tuple = field(default=(), repr=False)

    def exact(self) -> bool:
        """Every leaf below is a closed form its solver found exact (not "approximate", not the
        sparse polynomial fit, which never judges its residuals)."""
        if self.test == "leaf":
            return self.method is not None and self.method not in _INEXACT and \
                not self.method.startswith("approximate")
        return bool(self.children) and all(c.exact() for c in self.children)

    def to_dict(self) -> dict:
        """JSON-ready record (a non-finite RMSE becomes ``None``)."""
        rmse = self.val_rmse if self.val_rmse is not None and math.isfinite(self.val_rmse) else None
        return {"test": self.test, "evidence": self.evidence, "variables": list(self.variables),
                "method": self.method, "expression": self.expression, "val_rmse": rmse,
                "children": [c.to_dict() for c in self.children]}


@dataclass
class Decomposition:
    """Result of :func:`discovery.decompose.decompose`.

    Attributes
    ----------
    expression : sympy.Expr
        The formula in ``sympy.Symbol(name)`` of the given column names.
    val_rmse, val_r2 : float
        On the validation rows (the caller's test rows never enter).
    tree : Node
        The steps taken, with their evidence.
    notes : list of str
        Steps undone and why, budget stops.
    timings : dict
        Seconds per stage.
    """

    expression: sympy.Expr
    val_rmse: float
    val_r2: float
    tree: Node
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready record."""
        finite = [v if math.isfinite(v) else None for v in (float(self.val_rmse), float(self.val_r2))]
        return {"expression": str(self.expression), "val_rmse": finite[0], "val_r2": finite[1],
                "tree": self.tree.to_dict(), "notes": list(self.notes),
                "timings": {k: float(v) for k, v in self.timings.items()}}
