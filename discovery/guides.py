"""What the structure tests on the networks' exact derivatives report, and the cross-check guide
they imply."""

from __future__ import annotations

import sympy

from discovery.engine import Expansion
from discovery.errors import DiscoveryError
from discovery.interpret.structure import additive_separability, unused_variables

__all__ = ["structure_report", "structure_guide", "guide_for"]


def structure_report(expansion, kept, names, target, space, notes) -> dict | None:
    """Structure tests on the kept members' exact derivatives at the reference points.

    The expansion is in standardised (and, in log space, logarithmic) units; a per-variable
    affine change of units leaves zero derivatives zero, so the verdicts carry over to the
    table's columns. Needs order >= 2 (second derivatives) and at least two inputs.
    """
    if expansion.order < 2 or expansion.n_inputs < 2:
        return None
    members = Expansion(expansion.center, expansion.coefficients[:, :, kept], expansion.order, (len(kept),))
    try:
        influence = unused_variables(members)
        additive = additive_separability(members)
    except DiscoveryError as exc:
        notes.append(f"structure tests skipped: {exc}")
        return None
    with_influence, without = influence.groups if len(influence.groups) == 2 else (list(range(len(names))), [])
    blocks = [[names[i] for i in g] for g in additive.groups]
    parts = [f"f{k + 1}({', '.join(b)})" for k, b in enumerate(blocks)]
    if len(blocks) == 1:
        split = "no additive split" if space == "raw" else "no multiplicative split (log y on log x)"
    elif space == "raw":
        split = f"{target} = {' + '.join(parts)}"
    else:
        split = f"{target} = {' * '.join(parts)} (log y additive in log x)"
    return {
        "space": space,
        "inputs_with_influence": [names[i] for i in with_influence],
        "inputs_without_influence": [names[i] for i in without],
        "additive_blocks": blocks,
        "summary": split + (f"; no influence: {', '.join(names[i] for i in without)}" if without else ""),
        "members": int(additive.members),
        "threshold": float(additive.threshold),
    }


def structure_guide(structure: dict, formula: sympy.Expr | None = None):
    """The cross-check guide a structure report implies (additive blocks only hold for raw y),
    or ``None`` (no guide) when the structure tests are not clear.

    Not clear: no input has influence; ``formula`` (the expansion's) uses an input the tests call
    without influence; or a term of ``formula`` joins inputs of different additive blocks. So the
    engine never gets fewer variables than the expansion's formula uses.

    Examples
    --------
    >>> s = {"space": "raw", "inputs_with_influence": [], "additive_blocks": [["a"], ["b"]]}
    >>> structure_guide(s) is None
    True
    """
    return guide_for(structure, formula)[0]


def guide_for(structure: dict, formula: sympy.Expr | None, source: str = "expansion"):
    """(guide or None, why None); ``source`` names the formula in the reason."""
    from discovery.crosscheck import Guide

    used = list(structure["inputs_with_influence"])
    if not used:
        return None, "they found no input with influence"
    if formula is not None:
        lacking = sorted({s.name for s in formula.free_symbols} - set(used))
        if lacking:
            return None, f"the {source}'s formula uses {', '.join(lacking)}, which they call without influence"
    blocks = structure["additive_blocks"]
    additive = None
    if structure["space"] == "raw" and len(blocks) > 1:
        additive = [b for b in ([n for n in blk if n in used] for blk in blocks) if b]
        if formula is not None and len(additive) > 1:
            for term in sympy.Add.make_args(sympy.expand(formula)):
                vs = {s.name for s in term.free_symbols}
                if vs and not any(vs <= set(b) for b in additive):
                    return None, f"the {source}'s term {term} joins inputs of different additive blocks"
        additive = additive if len(additive) > 1 else None
    return Guide(variables=used, additive=additive), ""
