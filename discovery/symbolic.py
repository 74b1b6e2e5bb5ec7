"""Local polynomials as SymPy expressions, the algebra of units and spaces, and printing.

A polynomial is the exponent matrix ``monomials`` (``T x p`` integers) plus coefficients whose
first axis runs over the ``T`` terms (see :mod:`discovery.engine.polynomial`). This module

* converts one such polynomial into a SymPy expression in the user's column names
  (:func:`polynomial_to_sympy`, the only place where that happens),
* changes variables exactly from the standardised units the networks see to the original units
  of the table (:func:`to_original_units`), on the coefficient arrays themselves,
* reads a polynomial fitted in log space (``log|y|`` on ``log x``) back as a formula in ``x``:
  an affine polynomial becomes the monomial ``c * x1**a1 * x2**a2 ...``,
* prints formulas as LaTeX or plain text with a chosen number of significant digits
  (:func:`latex`, :func:`text`), with common numeric factors of fractions cancelled
  (:func:`tidy`).

Column names are used exactly as the user wrote them: a SymPy ``Symbol`` may carry any name
(``Symbol("temp (°C)")``, ``Symbol("gamma")``, ``Symbol("I")``), so names are never parsed or
renamed. Where text from an external engine must be parsed, :func:`placeholders` gives safe
stand-in names and the map back to the user's symbols. In LaTeX an identifier-like name keeps
SymPy's reading (``x1`` -> ``x_{1}``, ``m_1`` -> ``m_{1}``, and a column the user named after a
Greek letter, ``gamma``, prints as ``\\gamma``); any other name (spaces, units, punctuation,
non-ASCII letters) prints upright and verbatim: ``temp (°C)`` -> ``\\mathrm{temp\\ (°C)}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

__all__ = [
    "polynomial_to_sympy",
    "clean_number",
    "clean_candidates",
    "to_original_units",
    "make_symbols",
    "placeholders",
    "tidy",
    "latex_name",
    "latex",
    "text",
    "FormulaLatexPrinter",
    "FormulaStrPrinter",
]

SPACES = ("raw", "log")


def make_symbols(names: Sequence[str] | None, p: int) -> list[sympy.Symbol]:
    """Real SymPy symbols for ``p`` variables: ``names`` or ``x0 .. x{p-1}``.

    Examples
    --------
    >>> make_symbols(["m", "v"], 2)
    [m, v]
    """
    if names is None:
        names = [f"x{i}" for i in range(p)]
    names = [str(n) for n in names]
    if len(names) != p:
        raise ValueError(f"make_symbols(names, p={p}): got {len(names)} names; pass one name per variable")
    # Built directly, never parsed: any text is a valid Symbol name ("temp (°C)", "gamma", "I").
    return [sympy.Symbol(n, real=True) for n in names]


def placeholders(names: Sequence[str], prefix: str = "x") -> tuple[list[str], dict[sympy.Symbol, sympy.Symbol]]:
    """Parser-safe stand-in names for the variables, and the map back to the user's symbols.

    An engine that reads or writes formulas as text (a parser, a Julia backend) gets
    ``x0 .. x{p-1}``; its parsed result goes back to the user's names with
    ``expr.xreplace(back)``. The stand-ins avoid every given name, so the map is one-to-one.

    Parameters
    ----------
    names : sequence of str
        The user's column names, in order.
    prefix : str, default "x"
        Start of the stand-in names (an identifier no SymPy or Python name clashes with).

    Returns
    -------
    safe : list of str
        One stand-in name per variable.
    back : dict
        Plain ``Symbol(stand-in)`` -> real ``Symbol(user name)`` (as :func:`make_symbols`).

    Examples
    --------
    >>> safe, back = placeholders(["temp (°C)", "gamma"])
    >>> safe
    ['x0', 'x1']
    >>> (sympy.Symbol("x0") * 2 + sympy.Symbol("x1")).xreplace(back)
    gamma + 2*temp (°C)
    """
    names = [str(n) for n in names]
    taken = set(names)
    while any(f"{prefix}{i}" in taken for i in range(len(names))):
        prefix = "_" + prefix  # a user column is literally called x0: move every stand-in aside
    safe = [f"{prefix}{i}" for i in range(len(names))]
    user = make_symbols(names, len(names))
    return safe, {sympy.Symbol(s): u for s, u in zip(safe, user)}


def _number(value) -> sympy.Expr:
    """A coefficient as a SymPy number: SymPy numbers pass through, floats become ``Float``."""
    if isinstance(value, sympy.Basic):
        return value
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return sympy.Integer(int(value))
    return sympy.Float(value)


def polynomial_to_sympy(
    monomials: np.ndarray,
    coefficients: Sequence,
    center: Sequence | None = None,
    names: Sequence[str] | None = None,
    *,
    space: str = "raw",
    sign: float = 1.0,
) -> sympy.Expr:
    """One polynomial as a SymPy expression in the variables' names.

    Parameters
    ----------
    monomials : (T, p) integer array
        Exponents of each term.
    coefficients : (T,) floats or SymPy numbers
        ``c_alpha`` of ``sum_alpha c_alpha (x - center)^alpha``. Exact zeros are left out.
        SymPy numbers (``Rational(1, 2)``, ``sqrt(2)``) are kept exactly.
    center : (p,) or None
        Expansion point; ``None`` means the origin.
    names : p strings or None
        Variable names; they become real SymPy symbols. Default ``x0 .. x{p-1}``.
    space : {"raw", "log"}
        ``"raw"``: the polynomial itself. ``"log"``: the polynomial ``P`` is in ``u = log x``
        and predicts ``log|y|``; the result is ``sign * exp(P(log x))``, written as the monomial
        ``sign * exp(b) * prod x_i**a_i`` when ``P`` is affine.
    sign : +1 or -1
        Sign of the target in log space (ignored in raw space).

    Returns
    -------
    sympy.Expr

    Examples
    --------
    >>> import numpy as np
    >>> polynomial_to_sympy(np.array([[0, 0], [2, 0], [0, 1]]), [0.0, 0.5, 0.5], names=["x1", "x2"])
    0.5*x1**2 + 0.5*x2
    >>> polynomial_to_sympy(np.array([[0, 0], [1, 0], [0, 1]]), [0.0, 1, 1], names=["m", "v"], space="log")
    m*v
    """
    table = np.asarray(monomials)
    if table.ndim != 2:
        raise ValueError(f"polynomial_to_sympy(monomials, ...): monomials has shape {table.shape}; pass a (T, p) integer array")
    T, p = table.shape
    coefs = list(coefficients) if not isinstance(coefficients, np.ndarray) else list(coefficients.reshape(-1))
    if len(coefs) != T:
        raise ValueError(
            f"polynomial_to_sympy(monomials, coefficients, ...): {len(coefs)} coefficients for {T} monomials; "
            "pass one coefficient per row of monomials"
        )
    if space not in SPACES:
        raise ValueError(f"polynomial_to_sympy(..., space={space!r}): pass one of {SPACES}")
    symbols = make_symbols(names, p)
    center_vals = [sympy.Integer(0)] * p if center is None else [_number(c) for c in np.asarray(center, dtype=float).reshape(-1)]
    if len(center_vals) != p:
        raise ValueError(f"polynomial_to_sympy(..., center): center has {len(center_vals)} entries; pass {p} (one per variable)")
    if space == "log":
        variables = [sympy.log(s) for s in symbols]
    else:
        variables = list(symbols)
    shifted = [v - c for v, c in zip(variables, center_vals)]
    numbers = [_number(c) for c in coefs]

    if space == "log":
        degrees = table.sum(axis=1)
        if all(n == 0 for n, d in zip(numbers, degrees) if d > 1):
            # Affine in u = log x: exp(b + sum a_i u_i) = exp(b) * prod x_i**a_i, exactly.
            b = sympy.Integer(0)
            exponents = [sympy.Integer(0)] * p
            for alpha, n in zip(table, numbers):
                if alpha.sum() == 0:
                    b += n
                elif alpha.sum() == 1:
                    i = int(np.argmax(alpha))
                    exponents[i] += n
                    b -= n * center_vals[i]
            prefactor = sympy.exp(b)
            return _sign(sign) * prefactor * sympy.Mul(*(s**a for s, a in zip(symbols, exponents)))
        poly = sympy.Add(*(n * _term(shifted, alpha) for alpha, n in zip(table, numbers) if n != 0))
        return _sign(sign) * sympy.exp(poly)
    return sympy.Add(*(n * _term(shifted, alpha) for alpha, n in zip(table, numbers) if n != 0))


def _sign(sign: float) -> sympy.Integer:
    if sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"polynomial_to_sympy(..., sign={sign}): pass +1 or -1")
    return sympy.Integer(1 if sign > 0 else -1)


def _term(shifted: list[sympy.Expr], alpha: np.ndarray) -> sympy.Expr:
    return sympy.Mul(*(v ** int(a) for v, a in zip(shifted, alpha) if a))


def to_original_units(
    monomials: np.ndarray,
    coefficients,
    center,
    x_mean,
    x_scale,
    y_mean: float,
    y_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact change of variables from standardised to original units.

    The networks see ``z = (x - x_mean) / x_scale`` and predict ``(y - y_mean) / y_scale``.
    A polynomial ``sum_a c_a (z - z0)^a`` becomes ``sum_a c'_a (x - x0)^a`` with
    ``x0 = x_mean + x_scale * z0`` and ``c'_a = c_a * y_scale / prod_i x_scale_i**a_i``, plus
    ``y_mean`` on the constant term. Nothing is truncated or approximated. In log space pass the
    mean and scale of ``log x`` and ``log|y|``: the result is then a polynomial in ``u = log x``.

    Parameters
    ----------
    monomials : (T, p) integer array
    coefficients : (..., T, ...) array or tensor
        Leading axes match ``center``'s leading axes (e.g. ``(B, T, members)`` for ``(B, p)``
        centres, or ``(T,)`` for one ``(p,)`` centre).
    center : (..., p) array or tensor
        Expansion points in standardised units.
    x_mean, x_scale : (p,)
    y_mean, y_scale : float

    Returns
    -------
    coefficients, center : float64 arrays in original units (same shapes as given).

    Examples
    --------
    >>> import numpy as np
    >>> table = np.array([[0], [1], [2]])
    >>> c, x0 = to_original_units(table, np.array([0.0, 0.0, 1.0]), np.array([0.0]), [10.0], [2.0], 1.0, 4.0)
    >>> c.tolist(), x0.tolist()    # y = 1 + 4 * ((x - 10) / 2)**2 = 1 + (x - 10)**2
    ([1.0, 0.0, 1.0], [10.0])
    """
    table = np.asarray(monomials, dtype=np.int64)
    coefs = _as_numpy(coefficients)
    z0 = _as_numpy(center)
    x_mean = np.asarray(x_mean, dtype=np.float64).reshape(-1)
    x_scale = np.asarray(x_scale, dtype=np.float64).reshape(-1)
    T, p = table.shape
    if z0.shape[-1] != p or x_mean.shape != (p,) or x_scale.shape != (p,):
        raise ValueError(
            f"to_original_units(monomials, coefficients, center, x_mean, x_scale, ...): monomials have {p} variables, "
            f"center has {z0.shape[-1]}, x_mean {x_mean.size}, x_scale {x_scale.size}; pass {p} of each"
        )
    lead = z0.ndim - 1
    if coefs.ndim <= lead or coefs.shape[:lead] != z0.shape[:-1] or coefs.shape[lead] != T:
        raise ValueError(
            f"to_original_units(monomials, coefficients, center, ...): coefficients have shape {coefs.shape}; "
            f"pass shape {z0.shape[:-1] + (T,)} + (any trailing axes) to match center {z0.shape} and {T} monomials"
        )
    if np.any(x_scale == 0) or y_scale == 0:
        raise ValueError("to_original_units(...): x_scale and y_scale must be non-zero; pass the scales used to standardise")
    factor = float(y_scale) / np.prod(x_scale[None, :] ** table, axis=1)
    shape = (1,) * lead + (T,) + (1,) * (coefs.ndim - lead - 1)
    out = coefs * factor.reshape(shape)
    constant = np.flatnonzero(table.sum(axis=1) == 0)
    if constant.size:
        index = (slice(None),) * lead + (int(constant[0]),)
        out[index] += float(y_mean)
    elif y_mean != 0:
        raise ValueError("to_original_units(...): monomials have no constant term to carry y_mean; include the zero row")
    return out, x_mean + x_scale * z0


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.array(a, dtype=np.float64, copy=True)


# --------------------------------------------------------------------------------------------
# Clean numbers

_EXACT_CONSTANTS = [(math.sqrt(n), sympy.sqrt(n)) for n in (2, 3, 5, 6, 7, 8, 10, 11, 12)] + [
    (k * math.pi / q, sympy.Rational(k, q) * sympy.pi)
    for q in (1, 2, 3, 4)
    for k in range(1, 9)
    if math.gcd(k, q) == 1
]


# A value known to relative precision rho lands within rho of one of these constants by chance
# with probability about 2 * rho * (constants per unit of log-scale). A constant is claimed only
# when that chance is below 1e-3: weaker evidence reads as a decimal, not as pi or sqrt(n).
_CONSTANT_VALUES = [f for f, _ in _EXACT_CONSTANTS]
_CONSTANT_DENSITY = len(_CONSTANT_VALUES) / math.log(max(_CONSTANT_VALUES) / min(_CONSTANT_VALUES))
CONSTANT_MAX_REL = 1e-3 / (2 * _CONSTANT_DENSITY)
"""Largest relative tolerance at which a coefficient may be read as ``sqrt(n)`` or ``k*pi/q``."""


def _decimal(value: float, digits: int) -> tuple[float, sympy.Expr]:
    v = float(f"{value:.{digits}g}")
    return v, (sympy.Integer(int(v)) if v.is_integer() else sympy.Float(v))


def clean_candidates(value: float, kind: str, tolerance: float | None = None) -> list[tuple[float, sympy.Expr, str]]:
    """Clean numbers near ``value``, simplest first, as ``(float, SymPy number, family)``.

    With ``tolerance`` (the uncertainty the value will be matched within), the exact constants
    ``sqrt(n)`` and ``k*pi/q`` are offered only when ``tolerance / |value|`` is at most
    :data:`CONSTANT_MAX_REL`: with about 30 such constants, a looser match is a coincidence more
    often than once in a thousand, and a coefficient of a 0/1 column near 1.047 is not ``pi/3``.

    Examples
    --------
    >>> [c[1] for c in clean_candidates(0.26, "exponent")]
    [1/2, 1/3, 1/4]
    >>> any(c[2] == "constant" for c in clean_candidates(1.0472, "coefficient", tolerance=1e-4))
    False
    """
    out: list[tuple[float, sympy.Expr, str]] = []
    if kind == "exponent":
        for q in (1, 2, 3, 4):
            frac = Fraction(round(value * q), q)
            out.append((float(frac), sympy.Rational(frac.numerator, frac.denominator), f"p/{q}"))
        return [c for c in out if c[0] != 0]
    out.append((float(round(value)), sympy.Integer(round(value)), "integer"))
    out.append((*_decimal(value, 1), "1 digit"))
    for q in (3, 6):  # only thirds and sixths: denser fraction sets match noise too easily
        frac = Fraction(round(value * q), q)
        if frac.denominator > 2 and abs(frac.numerator) < 100:
            out.append((float(frac), sympy.Rational(frac.numerator, frac.denominator), "fraction"))
    out.append((*_decimal(value, 2), "2 digits"))
    if tolerance is None or (value != 0 and tolerance <= CONSTANT_MAX_REL * abs(value)):
        s = 1 if value > 0 else -1
        out.extend((s * f, s * e, "constant") for f, e in _EXACT_CONSTANTS)
    for digits in (3, 4, 5):
        out.append((*_decimal(value, digits), f"{digits} digits"))
    seen, unique = set(), []
    for f, e, why in out:
        if f != 0 and f not in seen:
            seen.add(f)
            unique.append((f, e, why))
    return unique


def clean_number(value: float, tolerance: float, kind: str = "coefficient") -> tuple[float, sympy.Expr] | None:
    """The simplest clean number within ``tolerance`` of ``value``, or ``None``.

    Coefficients are tried as integers, one-digit decimals, thirds and sixths, two-digit
    decimals, ``sqrt(n)`` and ``k*pi/q`` (only for ``tolerance <= CONSTANT_MAX_REL * |value|``,
    see :func:`clean_candidates`), then 3 to 5 significant digits. Exponents
    (``kind="exponent"``) are tried as multiples of 1, 1/2, 1/3 and 1/4. Zero is never
    returned (dropping a term is pruning, not snapping).

    Examples
    --------
    >>> clean_number(0.49999, 1e-4)
    (0.5, 0.500000000000000)
    >>> clean_number(6.67401, 1e-4)[0]
    6.674
    >>> clean_number(0.50004, 1e-3, kind="exponent")
    (0.5, 1/2)
    >>> clean_number(1.0472, 1e-4)       # near pi/3, but 1e-4 is too loose to claim pi
    (1.0472, 1.04720000000000)
    """
    if kind not in ("coefficient", "exponent"):
        raise ValueError(f"clean_number(value, tolerance, kind={kind!r}): pass 'coefficient' or 'exponent'")
    for f, e, _ in clean_candidates(float(value), kind, tolerance):
        if abs(f - value) <= tolerance:
            return f, e
    return None


# --------------------------------------------------------------------------------------------
# Printing


def tidy(expr: sympy.Basic) -> sympy.Basic:
    """``expr`` with the common numeric factors of every fraction cancelled; the value is unchanged.

    In each quotient the numeric factor that numerator and denominator share (the gcd of their
    coefficients' contents; all of the denominator's content when the numerator's coefficient is
    a float) is divided out, and a denominator whose terms are all negative changes sign with
    the numerator. Nothing else is rewritten: sums stay expanded, so polynomials read as
    the terms table lists them.

    Examples
    --------
    >>> V, pr, gamma, x1, x2 = sympy.symbols("V pr gamma x1 x2", real=True)
    >>> tidy(-4 * V * pr / (4 - 4 * gamma))
    -V*pr/(1 - gamma)
    >>> tidy(10 * x1 / (10 * x2 + 10))
    x1/(x2 + 1)
    >>> tidy(x1**2 / 2 + x2 / 2), tidy(x1 / (3 * x2 + 3))
    (x1**2/2 + x2/2, x1/(3*x2 + 3))
    """
    expr = sympy.sympify(expr)
    return expr.replace(_is_quotient, _cancel_numbers)


def _is_quotient(e: sympy.Basic) -> bool:
    if isinstance(e, sympy.Pow):
        return bool(e.exp.is_negative) and isinstance(e.base, sympy.Add)
    if isinstance(e, sympy.Mul):
        return any(isinstance(f, sympy.Pow) and f.exp.is_negative and isinstance(f.base, sympy.Add) for f in e.args)
    return False


def _content(e: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """``(c, rest)`` with ``e == c * rest`` and ``c`` the rational content of ``e`` (1 if none)."""
    if isinstance(e, sympy.Add):
        coefficients = [t.as_coeff_Mul()[0] for t in e.args]
        if all(c.is_Rational for c in coefficients):
            c, rest = e.as_content_primitive()
            return c, rest
        return sympy.Integer(1), e
    c, rest = e.as_coeff_Mul()
    return (c, rest) if c.is_Rational else (sympy.Integer(1), e)


def _cancel_numbers(e: sympy.Expr) -> sympy.Expr:
    numerator, denominator = sympy.fraction(e, exact=True)
    cn, n = _content(numerator)
    cd, d = _content(denominator)
    if cn == 1 and n == numerator and isinstance(numerator.as_coeff_Mul()[0], sympy.Float):
        cn, n = numerator.as_coeff_Mul()  # a float numerator absorbs the denominator's content
        common = cd
    else:
        common = sympy.gcd(cn, cd)
    if isinstance(d, sympy.Add) and all(t.could_extract_minus_sign() for t in d.args):
        n, d = -n, -d
    new = (cn / common) * n / ((cd / common) * d)
    return e if common == 1 and (n, d) == (numerator, denominator) else new


def _round_sig(value: float, precision: int) -> float:
    return float(f"{value:.{precision}g}")


def _simple_fraction(value: float, precision: int, max_denominator: int = 4) -> sympy.Rational | None:
    """``p/q`` (``q <= max_denominator``) that prints the same as ``value`` at ``precision``."""
    frac = Fraction(value).limit_denominator(max_denominator)
    if _round_sig(float(frac), precision) == _round_sig(value, precision):
        return sympy.Rational(frac.numerator, frac.denominator)
    return None


def _rounded(expr: sympy.Basic, precision: int) -> sympy.Basic:
    """Floats rounded to ``precision`` significant digits; integer values become integers;
    float exponents become simple fractions when they print the same."""
    if precision < 1:
        raise ValueError(f"latex(expr, precision={precision}): pass precision >= 1")
    expr = sympy.sympify(expr)
    pows = {}
    for node in expr.atoms(sympy.Pow):
        if isinstance(node.exp, sympy.Float):
            frac = _simple_fraction(float(node.exp), precision)
            if frac is not None:
                pows[node] = node.base**frac
    if pows:
        expr = expr.xreplace(pows)
    floats = {}
    for f in expr.atoms(sympy.Float):
        v = _round_sig(float(f), precision)
        floats[f] = sympy.Integer(int(v)) if v.is_integer() and abs(v) < 1e6 else sympy.Float(v)
    return expr.xreplace(floats) if floats else expr


def _float_parts(value: float, precision: int) -> tuple[str, int | None]:
    """Mantissa text and power of ten (``None`` for plain decimals) of a rounded float."""
    v = _round_sig(value, precision)
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-4):
        mantissa, exponent = f"{v:.{precision - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return mantissa, int(exponent)
    if v.is_integer():
        return str(int(v)), None
    return repr(v), None


# Names SymPy's LaTeX reading suits: letters then digits, with at most one "_subscript".
_IDENTIFIER = re.compile(r"[A-Za-z]+[0-9]*(_[A-Za-z0-9]+)?")
_LATEX_SPECIAL = {
    "\\": r"\backslash ", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "#": r"\#", "$": r"\$",
    "&": r"\&", "^": r"\hat{}", "~": r"\sim ", " ": r"\ ",
}


def latex_name(name: str) -> str:
    """LaTeX of a column name: SymPy's reading for identifiers, else the name upright and verbatim.

    Examples
    --------
    >>> latex_name("x1"), latex_name("m_1"), latex_name("gamma"), latex_name("I")
    ('x_{1}', 'm_{1}', '\\\\gamma', 'I')
    >>> latex_name("temp (°C)")
    '\\\\mathrm{temp\\\\ (°C)}'
    """
    if _IDENTIFIER.fullmatch(name):
        return LatexPrinter()._deal_with_super_sub(name)
    return r"\mathrm{" + "".join(_LATEX_SPECIAL.get(ch, ch) for ch in name) + "}"


class FormulaLatexPrinter(LatexPrinter):
    """LaTeX printer that rounds floats to ``precision`` significant digits.

    Integer-valued floats print as integers (``2.0*x`` -> ``2 x``, ``1.0*x`` -> ``x``), other
    floats in their shortest form (``0.5``, ``6.674``), float exponents close to simple
    fractions as those fractions, and tiny or huge numbers as ``m \\cdot 10^{e}``.

    Examples
    --------
    >>> import sympy
    >>> x = sympy.Symbol("x1")
    >>> FormulaLatexPrinter({"precision": 3}).doprint(0.49999 * x**2)
    '0.5 x_{1}^{2}'
    """

    _default_settings = {**LatexPrinter._default_settings, "precision": 3}

    def doprint(self, expr) -> str:
        return super().doprint(tidy(_rounded(expr, self._settings["precision"])))

    def _print_Symbol(self, expr, style="plain") -> str:
        name = self._settings["symbol_names"].get(expr)
        if name is not None:
            return name
        if _IDENTIFIER.fullmatch(expr.name):
            return super()._print_Symbol(expr, style)
        return latex_name(expr.name)

    def _print_Float(self, expr) -> str:
        mantissa, exponent = _float_parts(float(expr), self._settings["precision"])
        if exponent is None:
            return mantissa
        if mantissa in ("1", "-1"):
            return f"{mantissa[:-1]}10^{{{exponent}}}"
        return rf"{mantissa} \cdot 10^{{{exponent}}}"


class FormulaStrPrinter(StrPrinter):
    """Plain-text printer with the same number rounding as :class:`FormulaLatexPrinter`.

    Examples
    --------
    >>> import sympy
    >>> x = sympy.Symbol("x1")
    >>> FormulaStrPrinter({"precision": 3}).doprint(6.67401 * x)
    '6.67*x1'
    """

    _default_settings = {**StrPrinter._default_settings, "precision": 3}

    def doprint(self, expr) -> str:
        return super().doprint(tidy(_rounded(expr, self._settings["precision"])))

    def _print_Float(self, expr) -> str:
        mantissa, exponent = _float_parts(float(expr), self._settings["precision"])
        return mantissa if exponent is None else f"{mantissa}e{exponent}"


def latex(expr: sympy.Basic, precision: int = 3, **settings) -> str:
    """LaTeX of a formula with floats rounded to ``precision`` significant digits.

    Examples
    --------
    >>> import sympy
    >>> m1, m2, r = sympy.symbols("m1 m2 r", real=True)
    >>> latex(6.674 * m1 * m2 / r**2, precision=4)
    '\\\\frac{6.674 m_{1} m_{2}}{r^{2}}'
    """
    return FormulaLatexPrinter({"precision": precision, **settings}).doprint(expr)


def text(expr: sympy.Basic, precision: int = 3, **settings) -> str:
    """Plain text of a formula (SymPy syntax) with floats rounded to ``precision`` digits.

    Examples
    --------
    >>> import sympy
    >>> x1, x2 = sympy.symbols("x1 x2", real=True)
    >>> text(0.50001 * x1**2 + 0.49999 * x2)
    '0.5*x1**2 + 0.5*x2'
    """
    return FormulaStrPrinter({"precision": precision, **settings}).doprint(expr)
