"""Truncated multivariate Taylor series of tensors: the values the engine propagates.

A :class:`Series` wraps a coefficient tensor of shape ``(T, N, *shape)``: axis 0 runs over the
``T`` monomials of total degree ``<= order`` in ``p`` variables (graded order, see
:mod:`discovery.engine.polynomial`), and ``(N, *shape)`` is the shape the model itself sees
(``N`` is the model's batch axis). Degree-0 coefficients are the ordinary forward values.

The :class:`Algebra` holds what every series of one expansion shares: the monomial table, the
product indices and, for unmixed expansions, how many directions share one reference point.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from discovery.engine.polynomial import degree_slices, monomials, n_terms, product_table

__all__ = ["Algebra", "Series", "requested_threads", "serial_run", "threads_for"]

# Temporaries of one column block of a composition (elements): about 8 MB in float64.
_CHUNK_ELEMENTS = 1 << 20


class _Tables:
    """What every algebra of one ``(p, order)`` shares: monomials, product indices, and
    constants of the affine composition per device and dtype."""

    def __init__(self, p: int, order: int):
        self.p, self.order = p, order
        self.monomials = monomials(p, order)
        self.monomials.flags.writeable = False
        self.n_terms = n_terms(p, order)
        self.table = product_table(p, order)
        self.slices = degree_slices(p, order)
        self._affine: dict = {}

    def affine(self, device: torch.device, dtype: torch.dtype) -> "_AffinePlan":
        """Constants of :meth:`Algebra._compose_affine` (cached per device and dtype)."""
        key = (device, dtype)
        hit = self._affine.get(key)
        if hit is None:
            hit = _AffinePlan(self, device, dtype)
            self._affine[key] = hit
        return hit


class _AffinePlan:
    """The affine composition's gather rows and constants.

    The gathered source stacks ``p`` rows of ones, the ``n * p`` rows ``w_i^k / k!`` (row
    ``k p + i``) and the ``n + 1`` rows ``c_k k!``: term ``alpha`` takes rows
    ``alpha_i p + i`` for every variable and ``(n + 1) p + |alpha|``.
    """

    def __init__(self, tables: _Tables, device: torch.device, dtype: torch.dtype):
        p, n, exps = tables.p, tables.order, tables.monomials
        rows = np.concatenate([exps * p + np.arange(p), (n + 1) * p + exps.sum(1, keepdims=True)], 1)
        self.index = torch.from_numpy(rows.reshape(-1).copy()).to(device)
        self.counts = torch.arange(1, n + 1, dtype=dtype, device=device).reshape(n, 1, 1)
        factorial = [float(math.factorial(k)) for k in range(n + 1)]
        self.factorial = torch.tensor(factorial, dtype=dtype, device=device).reshape(n + 1, 1)
        T = tables.n_terms
        self.per_column = T * (p + 2) + 3 * (n + 1) * (p + 1)


# Intra-op threads pay off only for large linear maps and the fused kernels: on a busy machine a
# parallel region can wait a scheduler time slice (milliseconds) for its second thread, far longer
# than a small map or a memory-bound elementwise step takes (XLA likewise keeps small ops serial).
# An expansion therefore runs on one thread and hands the caller's threads to large work only.
PARALLEL_MACS = 1 << 25
_THREADS = threading.local()


@contextlib.contextmanager
def serial_run():
    """Run the block on one intra-op thread; :func:`threads_for` lends the caller's thread count
    to large work inside it. The caller's setting is restored on exit."""
    threads = torch.get_num_threads()
    previous = getattr(_THREADS, "count", None)
    _THREADS.count = threads
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
        _THREADS.count = previous


def requested_threads() -> int:
    """The caller's intra-op thread count inside :func:`serial_run` (else the current one)."""
    count = getattr(_THREADS, "count", None)
    return torch.get_num_threads() if count is None else count


@contextlib.contextmanager
def threads_for(macs: int, threshold: int = PARALLEL_MACS):
    """Inside :func:`serial_run`: the caller's threads for work of ``threshold`` multiply-adds
    or more (outside it, the current setting stands)."""
    count = getattr(_THREADS, "count", None)
    if count is None or count == 1 or macs < threshold:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(1)


@functools.lru_cache(maxsize=None)
def _tables(p: int, order: int) -> _Tables:
    return _Tables(p, order)


@dataclass
class Algebra:
    """Truncated polynomial algebra in ``p`` variables up to ``order``.

    ``directions`` > 1 marks an unmixed expansion: the batch axis is ``directions`` blocks of
    the reference batch (direction-major), all blocks with the same degree-0 values, so
    univariate coefficient functions are computed once per reference point and broadcast.
    """

    p: int
    order: int
    directions: int = 1
    monomials: object = field(init=False, repr=False)
    n_terms: int = field(init=False)

    def __post_init__(self):
        shared = _tables(self.p, self.order)
        self.monomials = shared.monomials.copy()
        self.n_terms = shared.n_terms
        self._shared = shared
        self._table = shared.table
        self._slices = shared.slices

    def terms_upto(self, degree: int) -> int:
        return self._slices[degree].stop

    # -- products ---------------------------------------------------------------------------
    def mul(self, a: torch.Tensor, b: torch.Tensor, max_degree: int | None = None,
            a_has_constant: bool = True) -> torch.Tensor:
        """Truncated product of coefficient tensors (terms on axis 0), degrees ``<= max_degree``.

        Rows of ``b`` beyond ``terms_upto(max_degree)`` are never read; the result has exactly
        ``terms_upto(max_degree)`` rows.
        """
        d = self.order if max_degree is None else max_degree
        rows = self.terms_upto(d)
        shape = a.shape[1:] if a.shape[1:] == b.shape[1:] else torch.broadcast_shapes(a.shape[1:], b.shape[1:])
        if self.p == 1:
            return self._mul_univariate(a, b, d, a_has_constant, shape)
        left, right, out = self._table.indices(d, not a_has_constant, a.device)
        prods = a[left] * b[right]
        result = a.new_zeros((rows, *shape))
        return result.index_add_(0, out, prods if prods.shape[1:] == shape else prods.expand(len(out), *shape))

    @staticmethod
    def _mul_univariate(a, b, d, a_has_constant, shape):
        # One fused multiply-add per coefficient of ``a``: cheaper than gathering all pairs.
        out = a.new_zeros((d + 1, *shape))
        for j in range(0 if a_has_constant else 1, d + 1):
            out[j:].addcmul_(a[j].expand(shape), b[: d + 1 - j].expand(d + 1 - j, *shape))
        return out

    def compose(self, a: torch.Tensor, f_coefficients: torch.Tensor, degree: int | None = None) -> torch.Tensor:
        """``f(a)`` given the univariate Taylor coefficients of ``f`` at ``a[0]``.

        ``f(a0 + v) = sum_k c_k v^k`` is evaluated by Horner's scheme in ``w = v^2``:
        ``sum_j (c_2j + c_2j+1 v) w^j``, which needs one product for ``w`` and ``order // 2``
        Horner stages instead of ``order``. ``v`` has no constant term, so stage ``j`` is
        needed only up to degree ``order - 2 j``. When ``a`` is known to be affine
        (``degree == 1``, e.g. the first layer's pre-activation) the powers of ``v`` follow
        from the multinomial theorem instead.
        """
        n = self.order
        c = self._broadcast_shared(f_coefficients, a)
        if n == 0:
            return c[:1].expand(1, *a.shape[1:])
        # Every element of the trailing shape is composed independently: large inputs run in
        # column blocks whose temporaries stay in cache (the products are memory-bound) and
        # small enough to be reused rather than mapped afresh.
        T = self.n_terms
        shape = a.shape[1:]
        flat = a.reshape(T, -1)
        cf = (c if c.shape[1:] == shape else c.expand(n + 1, *shape)).reshape(n + 1, -1)
        if degree == 1:
            method, plan = self._compose_affine, self._shared.affine(a.device, a.dtype)
        else:
            method, plan = self._horner, self._table.square_horner(a.device)
        columns = flat.shape[1]
        chunk = max(1, _CHUNK_ELEMENTS // plan.per_column)
        if columns <= chunk:
            return method(flat, cf, plan).view(T, *shape)
        result = a.new_empty((T, columns))
        for start in range(0, columns, chunk):
            stop = min(start + chunk, columns)
            result[:, start:stop] = method(flat[:, start:stop], cf[:, start:stop], plan)
        return result.view(T, *shape)

    def _horner(self, a, c, plan):
        """Horner's scheme in ``w = v^2`` on ``(terms, columns)`` tensors.

        ``w`` comes from one gathered product and its left factors are gathered once;
        ``B_j = c_2j + c_2j+1 v`` (all ``j`` at once) are consecutive blocks of one buffer, so
        each stage ``B_j += w * B_j+1`` is one gather of the right factors, one multiply by a
        prefix of the left factors and one scatter-add into the buffer. Rows of ``B_j`` above
        degree ``order - 2 j`` are never read, so they need no truncation.
        """
        n, T = self.order, self.n_terms
        nb = (n + 1) // 2  # the B_j with a v term (c_2j+1 exists)
        # Autograd cannot see through out= buffers and in-place writes into views.
        if torch.is_grad_enabled() and (a.requires_grad or c.requires_grad):
            return self._horner_tracked(a, c, plan)
        rows = a.new_empty((nb * T, a.shape[1]))
        B = rows.view(nb, T, a.shape[1])
        torch.mul(c[1::2].unsqueeze(1), a, out=B)  # row 0 is overwritten next
        B[:, 0] = c[0 : 2 * nb : 2]
        if n < 2:
            return B[0]
        # w = v^2 = 2 sum_{i<j} v_i v_j + sum_i v_i^2, each unordered pair gathered once.
        g = torch.index_select(a, 0, plan.square)
        half, cross = plan.n_products, plan.n_cross
        prods = g[:half].mul_(g[half:])
        w = a.new_zeros(a.shape)
        w.index_add_(0, plan.cross_out, prods[:cross], alpha=2).index_add_(0, plan.square_out, prods[cross:])
        if plan.even:  # the innermost B is the constant c_n
            B[nb - 1].addcmul_(w, c[n:])
        if plan.stages:
            left = torch.index_select(w, 0, plan.left)
            for _, k, _, _, gather, scatter in plan.stages:
                rows.index_add_(0, scatter, torch.index_select(rows, 0, gather).mul_(left[:k]))
        return B[0]

    def _horner_tracked(self, a, c, plan):
        """:meth:`_horner` without in-place writes, for inputs that autograd follows."""
        n = self.order
        nb = (n + 1) // 2
        B = torch.cat([c[0 : 2 * nb : 2].unsqueeze(1), c[1::2].unsqueeze(1) * a[1:]], 1)
        if n < 2:
            return B[0]
        g = torch.index_select(a, 0, plan.square)
        half, cross = plan.n_products, plan.n_cross
        prods = g[:half] * g[half:]
        w = a.new_zeros(a.shape).index_add(0, plan.cross_out, prods[:cross], alpha=2)
        w = w.index_add(0, plan.square_out, prods[cross:])
        wl = w[plan.left]
        acc = B[nb - 1] + w * c[n:] if plan.even else B[nb - 1]
        for j, k, right, out, _, _ in plan.stages:
            acc = B[j].index_add(0, out, wl[:k] * acc[right])
        return acc

    def _compose_affine(self, a, c, plan):
        """``sum_alpha c_|alpha| |alpha|! prod_i w_i^alpha_i / alpha_i!`` for ``v = sum_i w_i dx_i``
        on ``(terms, columns)`` tensors: one gather of ``p + 1`` factors per term from the rows
        ``1``, ``w_i^k / k!`` and ``c_k k!``, multiplied together."""
        T, p, n = self.n_terms, self.p, self.order
        w = a[1 : p + 1]
        scaled = torch.cumprod(w.unsqueeze(0) / plan.counts, 0)  # w_i^k / k!, (n, p, columns)
        rows = torch.cat([w.new_ones((p, w.shape[1])), scaled.view(n * p, -1), c * plan.factorial])
        return torch.index_select(rows, 0, plan.index).view(T, p + 1, -1).prod(1)

    def _broadcast_shared(self, coefficients: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Expand per-reference-point coefficients over the directions of an unmixed series."""
        if self.directions == 1 or coefficients.shape[1] == like.shape[1]:
            return coefficients
        c = coefficients.unsqueeze(1).expand(coefficients.shape[0], self.directions, *coefficients.shape[1:])
        return c.reshape(coefficients.shape[0], -1, *coefficients.shape[2:])

    def shared_constant(self, a: torch.Tensor) -> torch.Tensor:
        """Degree-0 values of one direction block (all blocks are equal in unmixed mode)."""
        if self.directions == 1:
            return a[0]
        return a[0][: a.shape[1] // self.directions]


class Series:
    """Coefficients ``(T, N, *shape)`` of a truncated Taylor series, and its algebra.

    A series with a known degree bound may store only its first rows (``stored``, at least the
    terms up to ``degree``); the zero rows above them are materialised only when ``coeffs`` is
    read. Linear maps and univariate recurrences work on the stored rows alone, so the input
    series of a wide first layer and that layer's output never allocate their zero rows.
    ``unit_directions = (start, stop, points)`` marks an unmixed input series whose degree-1
    rows are the unit vectors ``e_start .. e_stop-1`` (direction-major, each repeated for
    ``points`` reference points) and whose degree-0 rows repeat those points: a ``Linear``
    layer then reads its weight's columns instead of multiplying by the identity.
    """

    __slots__ = ("stored", "algebra", "degree", "unit_directions")

    def __init__(self, coeffs: torch.Tensor, algebra: Algebra, degree: int | None = None,
                 unit_directions: tuple | None = None):
        self.stored = coeffs
        self.algebra = algebra
        self.degree = degree  # known bound on the polynomial degree; None means "order"
        self.unit_directions = unit_directions

    @property
    def coeffs(self) -> torch.Tensor:
        """All ``T`` rows of coefficients (zero rows above the stored ones filled in)."""
        stored, T = self.stored, self.algebra.n_terms
        if stored.shape[0] < T:
            full = stored.new_zeros((T, *stored.shape[1:]))
            full[: stored.shape[0]] = stored
            self.stored = stored = full
        return stored

    @property
    def value(self) -> torch.Tensor:
        """The forward value (degree-0 coefficients)."""
        return self.stored[0]

    @property
    def shape(self) -> torch.Size:
        return self.stored.shape[1:]

    @property
    def dtype(self) -> torch.dtype:
        return self.stored.dtype

    @property
    def device(self) -> torch.device:
        return self.stored.device

    def dim(self) -> int:
        return self.stored.ndim - 1

    def new(self, coeffs: torch.Tensor, degree: int | None = -1) -> "Series":
        """A series of the same algebra; ``degree=-1`` keeps this series' degree bound."""
        return Series(coeffs, self.algebra, self.degree if degree == -1 else degree)

    def _live_rows(self) -> int:
        """Rows that may be nonzero: all, or the terms up to the known degree."""
        T = self.algebra.n_terms
        return T if self.degree is None else min(T, self.algebra.terms_upto(min(self.degree, self.algebra.order)))

    def map_linear(self, fn, bias: torch.Tensor | None = None, macs_per_row: int | None = None) -> "Series":
        """Apply a linear map ``fn`` (acting on ``(N, *shape)`` batches) to every coefficient.

        The bias belongs to the degree-0 coefficient only: an affine map's higher-order
        coefficients see the weight alone. Rows above the known degree are zero and are
        neither mapped nor stored (the first layer of a wide network sees an affine input, so
        this skips most of its work). ``macs_per_row``: multiply-adds per mapped sample row
        (a Linear layer's weight size), which decides whether the map gets the caller's threads;
        by default estimated as the input row's size squared.
        """
        live = self._live_rows()
        stored = self.stored
        N = stored.shape[1]
        rows = stored if stored.shape[0] == live else stored[:live]
        flat = rows.reshape(live * N, *stored.shape[2:])
        row = flat[0].numel() if flat.shape[0] else 0
        with threads_for(flat.shape[0] * (row * row if macs_per_row is None else macs_per_row)):
            mapped = fn(flat)
        out = mapped.reshape(live, N, *mapped.shape[1:])
        return Series(self._add_bias(out, bias), self.algebra, self.degree)

    @staticmethod
    def _add_bias(out: torch.Tensor, bias) -> torch.Tensor:
        if bias is None:
            return out
        if out.requires_grad:
            out = out.clone()
            out[0] = out[0] + bias
        else:
            out[0].add_(bias)
        return out

    def map_unit_directions(self, weight: torch.Tensor, bias: torch.Tensor | None) -> "Series":
        """``F.linear(self, weight, bias)`` for a series marked ``unit_directions``: the degree-0
        rows are the points mapped once and repeated, the degree-1 rows the weight's columns."""
        start, stop, points = self.unit_directions
        directions = stop - start
        x = self.stored[0][:points]
        value = torch.nn.functional.linear(x, weight, bias)
        out_features = weight.shape[0]
        rows = self.stored.new_empty((min(2, self.algebra.n_terms), directions, points, out_features))
        rows[0] = value.unsqueeze(0)
        if rows.shape[0] > 1:
            rows[1] = weight.t()[start:stop].unsqueeze(1)
        return Series(rows.view(rows.shape[0], directions * points, out_features), self.algebra, self.degree)

    def apply_elementwise(self, coefficient_fn, fused=None) -> "Series":
        """``f(self)`` for an elementwise ``f`` given by ``coefficient_fn(x0, order)``.

        ``fused(coeffs, p, order)``, when given, maps the whole series at once by ``f``'s
        coefficient recurrence (as ``jet`` does; ``coeffs`` holds the rows up to the known
        degree, the rest being zero) and may return ``None`` where it does not apply. It
        costs about two truncated products where composing with ``f``'s coefficients costs
        ``order / 2``.
        """
        alg = self.algebra
        if fused is not None and alg.order > 0:
            out = fused(self.stored[: self._live_rows()], alg.p, alg.order)
            if out is not None:
                return self.new(out, None)
        c = coefficient_fn(alg.shared_constant(self.coeffs), alg.order)
        return self.new(alg.compose(self.coeffs, c, self.degree), None)
