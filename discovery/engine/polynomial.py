"""Truncated multivariate polynomials: exponent tables, products, shifts, evaluation.

A polynomial in ``p`` variables of total degree ``<= n`` is an integer exponent matrix
``monomials`` (``T x p``, ``T = C(p + n, n)``) and a coefficient tensor whose *first* axis runs
over those ``T`` terms. Terms are in graded order: degree 0 first, then all degree-1 terms, and
so on; inside one degree the order is reverse-lexicographic on the exponents
(``x0^2, x0 x1, x1^2`` for ``p = 2``). Every function here works on any trailing shape, so the
same code serves one polynomial, a batch of reference points, or a layer's worth of hidden
units.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch

__all__ = [
    "monomials",
    "n_terms",
    "degree_slices",
    "ProductTable",
    "SquareHorner",
    "product_table",
    "shift_coefficients",
    "evaluate",
    "factorials",
]


def n_terms(p: int, order: int) -> int:
    """Number of monomials of total degree ``<= order`` in ``p`` variables."""
    return math.comb(p + order, order)


@functools.lru_cache(maxsize=None)
def _monomials(p: int, order: int) -> tuple[tuple[int, ...], ...]:
    rows: list[tuple[int, ...]] = []
    for degree in range(order + 1):
        rows.extend(_compositions(degree, p))
    return tuple(rows)


def _compositions(total: int, parts: int):
    """Exponent tuples of ``parts`` entries summing to ``total``, first entry largest first."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def monomials(p: int, order: int) -> np.ndarray:
    """Exponent matrix ``(T, p)`` of all monomials of degree ``<= order``, graded order.

    Examples
    --------
    >>> monomials(2, 2).tolist()
    [[0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2]]
    """
    if p < 1 or order < 0:
        raise ValueError(f"monomials(p={p}, order={order}): need p >= 1 and order >= 0")
    return np.array(_monomials(p, order), dtype=np.int64).reshape(-1, p)


def degree_slices(p: int, order: int) -> list[slice]:
    """``slices[k]`` selects the degree-``k`` terms of the graded order."""
    return [slice(n_terms(p, k - 1) if k else 0, n_terms(p, k)) for k in range(order + 1)]


def factorials(monomial_table: np.ndarray) -> np.ndarray:
    """``alpha!`` for every row ``alpha`` of an exponent table (float64)."""
    fact = np.array([math.factorial(k) for k in range(int(monomial_table.max(initial=0)) + 1)], dtype=np.float64)
    return fact[monomial_table].prod(axis=1)


class ProductTable:
    """Index triples ``(i, j, k)`` with ``m_i + m_j = m_k`` for a truncated product.

    ``left``, ``right`` and ``out`` are index tensors; the product of two coefficient tensors
    ``a`` and ``b`` (terms on axis 0) is ``c[out] += a[left] * b[right]``.
    The pairs are sorted by output degree so that ``upto(d)`` cheaply restricts the product to
    output degree ``<= d`` (Horner's scheme needs fewer and fewer degrees).
    """

    def __init__(self, p: int, order: int):
        table = monomials(p, order)
        degrees = table.sum(axis=1)
        left, right = np.nonzero(degrees[:, None] + degrees[None, :] <= order)
        # Exponent rows are encoded as base-(order+1) integers to find each sum's row.
        base = (order + 1) ** np.arange(p, dtype=np.int64)
        codes = table @ base
        sorter = np.argsort(codes)
        out = sorter[np.searchsorted(codes, (table[left] + table[right]) @ base, sorter=sorter)]
        out_degree = degrees[left] + degrees[right]
        arr = np.stack([out_degree, degrees[left], left, right, out], axis=1)
        arr = arr[np.lexsort(arr.T[::-1])]
        self.p, self.order = p, order
        self.n_terms = len(table)
        self._out_degree = arr[:, 0]
        self._left_degree = arr[:, 1]
        self.left = torch.from_numpy(arr[:, 2].copy())
        self.right = torch.from_numpy(arr[:, 3].copy())
        self.out = torch.from_numpy(arr[:, 4].copy())
        self._cache: dict = {}

    def indices(self, max_degree: int, skip_constant_left: bool, device: torch.device):
        """Index triples restricted to output degree ``<= max_degree``.

        With ``skip_constant_left`` the pairs whose left factor is the constant term are left
        out (used when the left factor is known to have no constant term).
        """
        key = (max_degree, skip_constant_left, device)
        hit = self._cache.get(key)
        if hit is None:
            keep = self._out_degree <= max_degree
            if skip_constant_left:
                keep &= self._left_degree > 0
            keep_t = torch.from_numpy(keep)
            hit = tuple(t[keep_t].to(device) for t in (self.left, self.right, self.out))
            self._cache[key] = hit
        return hit

    def square_horner(self, device: torch.device) -> "SquareHorner":
        """Index sets for Horner's scheme in ``w = v^2`` (cached per device)."""
        key = ("square_horner", device)
        hit = self._cache.get(key)
        if hit is None:
            hit = SquareHorner(self, device)
            self._cache[key] = hit
        return hit


class SquareHorner:
    """Index sets for ``f(a0 + v) = sum_j (c_2j + c_2j+1 v) w^j``, ``w = v^2``, by Horner in ``w``.

    The composition gathers the left factors of ``w * acc`` (rows of ``w`` of degree >= 2,
    ``n_left`` of them) once and keeps every ``B_j = c_2j + c_2j+1 v`` (``T`` rows each) as
    consecutive blocks of one buffer, so that a Horner stage ``B_j += w * B_j+1`` is one
    gather of the right factors, one multiply by a prefix of the left factors and one
    scatter-add into the buffer.

    Attributes
    ----------
    square : (2 m,) index tensor
        One gather for the products of ``w = v * v`` with both factors of degree >= 1, each
        unordered pair once: left factors first, then right factors. The first ``n_cross``
        products are the pairs ``i < j`` (they count twice), the rest the squares ``v_i^2``.
    cross_out, square_out : index tensors
        Output rows of the cross products and of the squares.
    left : index tensor
        Rows of ``w`` that are left factors of ``w * acc``, sorted by output degree.
    even : bool
        ``order`` is even: the innermost ``B`` is the constant ``c_order``, and the first stage
        is ``B_m-1 += c_order w`` (no gather).
    stages : list of ``(j, count, right, out, gather, scatter)``
        Stage ``B_j += w * B_j+1`` up to degree ``order - 2 j`` (outer stages last): the first
        ``count`` left factors times rows ``right`` of ``B_j+1`` into rows ``out`` of ``B_j``;
        ``gather`` and ``scatter`` are the same rows of the buffer of all ``B``.
    per_column : int
        Rows of the buffer and of temporaries per element of the trailing shape (sizes the
        column blocks of large inputs).
    """

    def __init__(self, table: ProductTable, device: torch.device):
        order, T = table.order, table.n_terms
        left, right, out = (t.numpy() for t in (table.left, table.right, table.out))
        both = (table._left_degree > 0) & (table._out_degree > table._left_degree)
        cross = both & (left < right)
        diag = both & (left == right)
        as_t = lambda arr: torch.from_numpy(np.ascontiguousarray(arr)).to(device)  # noqa: E731
        self.n_cross = int(np.count_nonzero(cross))
        self.square = as_t(np.concatenate([left[cross], left[diag], right[cross], right[diag]]))
        self.n_products = len(self.square) // 2
        self.cross_out = as_t(out[cross])
        self.square_out = as_t(out[diag])
        self.even = order % 2 == 0
        keep = table._left_degree > 1
        degrees = table._out_degree[keep]
        left, right, out = left[keep], right[keep], out[keep]
        self.left = as_t(left)
        self.n_left = L = len(left)
        self.stages = []
        for j in range(order // 2 - (2 if self.even else 1), -1, -1):
            k = int(np.count_nonzero(degrees <= order - 2 * j))
            self.stages.append((j, k, as_t(right[:k]), as_t(out[:k]),
                                as_t(right[:k] + (j + 1) * T), as_t(out[:k] + j * T)))
        self.per_column = 2 * L + ((order + 1) // 2 + 1) * T + len(self.square)


@functools.lru_cache(maxsize=None)
def product_table(p: int, order: int) -> ProductTable:
    """Cached :class:`ProductTable` for ``p`` variables and truncation ``order``."""
    return ProductTable(p, order)


def _binomial_shift_matrix(monomial_table: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Matrix ``S`` (T x T) with ``new = S @ old`` for re-centring by ``delta`` (one point)."""
    T = len(monomial_table)
    index = {tuple(row): k for k, row in enumerate(monomial_table)}
    S = np.zeros((T, T), dtype=np.float64)
    for col, alpha in enumerate(monomial_table):
        # (x - c_old)^alpha = ((x - c_new) + delta)^alpha, expanded by the binomial theorem.
        ranges = [range(a + 1) for a in alpha]
        for beta in itertools.product(*ranges):
            coef = 1.0
            for a, b, d in zip(alpha, beta, delta):
                coef *= math.comb(int(a), int(b)) * d ** (int(a) - int(b))
            S[index[beta], col] += coef
    return S


def shift_coefficients(
    coefficients: torch.Tensor,
    monomial_table: np.ndarray,
    old_center: torch.Tensor,
    new_center: torch.Tensor,
) -> torch.Tensor:
    """Re-centre polynomials exactly.

    Parameters
    ----------
    coefficients : (B, T, ...) tensor
        Coefficients of ``sum_alpha c_alpha (x - old_center)^alpha``.
    monomial_table : (T, p) integer array
    old_center, new_center : (B, p) tensors (``new_center`` may also be ``(p,)``)

    Returns
    -------
    (B, T, ...) tensor of coefficients in powers of ``x - new_center``. No truncation happens:
    a polynomial of degree ``n`` stays one of degree ``n``.
    """
    B = coefficients.shape[0]
    new_center = torch.as_tensor(new_center, dtype=coefficients.dtype, device=coefficients.device)
    if new_center.ndim == 1:
        new_center = new_center.expand(B, -1)
    deltas = (new_center - old_center.to(coefficients)).detach().cpu().numpy()
    mats = np.stack([_binomial_shift_matrix(monomial_table, d) for d in deltas])
    S = torch.from_numpy(mats).to(coefficients)
    flat = coefficients.reshape(B, coefficients.shape[1], -1)
    return torch.bmm(S, flat).reshape(coefficients.shape)


def evaluate(
    coefficients: torch.Tensor,
    monomial_table: np.ndarray,
    center: torch.Tensor,
    x: torch.Tensor,
) -> torch.Tensor:
    """Evaluate ``B`` polynomials at ``M`` points.

    ``coefficients`` (B, T, n_out), ``center`` (B, p), ``x`` (M, p) -> (B, M, n_out).
    """
    powers_table = torch.as_tensor(monomial_table, device=coefficients.device)
    dx = x.to(coefficients)[None, :, :] - center.to(coefficients)[:, None, :]  # (B, M, p)
    order = int(monomial_table.max(initial=0))
    # powers[..., i, k] = dx_i^k, then one gather per variable.
    powers = torch.stack([dx**k for k in range(order + 1)], dim=-1)  # (B, M, p, n+1)
    terms = torch.ones(dx.shape[0], dx.shape[1], len(monomial_table), dtype=dx.dtype, device=dx.device)
    for i in range(dx.shape[-1]):
        terms = terms * powers[:, :, i, :][:, :, powers_table[:, i]]
    return torch.einsum("bmt,bto->bmo", terms, coefficients)
