"""Context-aware first- and second-order interpretations (CAFO, CASO, Smooth CASO).

For a sample ``x`` with loss ``l`` the interpretation is the perturbation ``delta`` that
maximises

    CAFO:  g . delta                        - lambda1 |delta|_1 - lambda2 |delta|_2^2
    CASO:  g . delta + delta . H delta / 2  - lambda1 |delta|_1 - lambda2 |delta|_2^2

with ``g`` and ``H`` the input gradient and Hessian of the loss. ``lambda2 > L / 2`` (``L`` the
largest eigenvalue of ``H``) makes CASO strictly concave; the L1 term selects groups of
features. It is solved as a minimisation by proximal gradient descent (FISTA with backtracking),
needing only Hessian-vector products (autograd, the complex-step engine, or the closed-form
Hessian of ReLU networks under cross-entropy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from discovery.engine.csfd import csfd_hvp
from discovery.errors import ExpansionError

__all__ = [
    "Interpretation",
    "cafo",
    "caso",
    "solve_interpretation",
    "relu_input_hessian",
    "relu_jacobian",
    "soft_threshold",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Interpretation:
    """Result of :func:`cafo` / :func:`caso`.

    Attributes
    ----------
    delta : torch.Tensor
        ``(B, *input_shape)`` feature importance (the optimal perturbation).
    lambda1, lambda2 : torch.Tensor
        ``(B,)`` penalties used per sample.
    sparsity : torch.Tensor
        ``(B,)`` share of exactly-zero entries of ``delta``.
    objective : torch.Tensor
        ``(B,)`` value of the maximised objective at ``delta``.
    iterations : int
        FISTA iterations run.
    """

    delta: torch.Tensor
    lambda1: torch.Tensor
    lambda2: torch.Tensor
    sparsity: torch.Tensor
    objective: torch.Tensor
    iterations: int


def soft_threshold(v: torch.Tensor, threshold) -> torch.Tensor:
    """Proximal map of ``threshold * |.|_1``: shrink towards zero, exact zeros below it."""
    return torch.sign(v) * torch.clamp(v.abs() - threshold, min=0.0)


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).reshape(a.shape[0], -1).sum(dim=1)


def _per_sample(t, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype).reshape(-1)
    return t.expand(like.shape[0]) if t.numel() == 1 else t


def solve_interpretation(gradient: torch.Tensor, hvp: Callable[[torch.Tensor], torch.Tensor] | None,
                         lambda1, lambda2, *, max_iter: int = 300, tol: float = 1e-12,
                         step0: float | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Maximise ``g.d + d.Hd/2 - lambda1 |d|_1 - lambda2 |d|^2`` per sample with FISTA.

    Parameters
    ----------
    gradient : (B, ...) tensor
    hvp : callable or None
        ``v (B, ...) -> H v`` per sample; ``None`` for CAFO (no Hessian term).
    lambda1, lambda2 : float or (B,) tensor
        ``lambda2`` must exceed half the largest eigenvalue of ``H`` (strict concavity).
    max_iter, tol : stopping rule (relative change of ``d``).
    step0 : float, optional
        Initial Lipschitz guess of the smooth part (default ``2 lambda2``).

    Returns
    -------
    delta, objective, iterations

    Examples
    --------
    >>> g = torch.tensor([[3.0, -0.5, 1.0]])
    >>> d, _, _ = solve_interpretation(g, None, 1.0, 0.5)   # soft(g, 1) / (2 * 0.5)
    >>> d.tolist()
    [[2.0, -0.0, 0.0]]
    """
    g = gradient
    B = g.shape[0]
    lam1 = _per_sample(lambda1, g)
    lam2 = _per_sample(lambda2, g)
    shape = (B, *([1] * (g.ndim - 1)))

    def smooth(d):  # the negated smooth part, to be minimised, and its gradient
        hd = hvp(d) if hvp is not None else torch.zeros_like(d)
        value = -_bdot(g, d) - 0.5 * _bdot(d, hd) + lam2 * _bdot(d, d)
        grad = -g - hd + 2 * lam2.reshape(shape) * d
        return value, grad

    lip = torch.full((B,), float(step0) if step0 else 1.0, dtype=g.dtype) * (
        1.0 if step0 else (2 * lam2).clamp(min=1e-12))
    x = torch.zeros_like(g)
    y = x.clone()
    t = 1.0
    it = 0
    for it in range(1, max_iter + 1):
        fy, gy = smooth(y)
        pending = torch.ones(B, dtype=torch.bool)
        x_new = x
        for _ in range(60):  # backtracking: grow the Lipschitz guess where the bound fails
            L = lip.reshape(shape)
            cand = soft_threshold(y - gy / L, (lam1 / lip).reshape(shape))
            fc, _ = smooth(cand)
            diff = cand - y
            bound = fy + _bdot(gy, diff) + 0.5 * lip * _bdot(diff, diff)
            ok = fc <= bound + 1e-12 * fy.abs().clamp(min=1.0)
            x_new = torch.where(pending.reshape(shape), cand, x_new)
            pending = pending & ~ok
            if not pending.any():
                break
            lip = torch.where(pending, lip * 2.0, lip)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = x_new + ((t - 1) / t_new) * (x_new - x)
        change = (x_new - x).reshape(B, -1).norm(dim=1) / x_new.reshape(B, -1).norm(dim=1).clamp(min=1e-300)
        x, t = x_new, t_new
        if bool((change < tol).all()) or bool((x == 0).all() and it > 2):
            break
    value, _ = smooth(x)
    objective = -value - lam1 * x.reshape(B, -1).abs().sum(dim=1)
    return x, objective, it


# -- losses and their derivatives ---------------------------------------------------------------

def _cross_entropy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # written out: the double backward of F.cross_entropy is far slower than this form
    return torch.logsumexp(out, dim=1) - out.gather(1, target.long().reshape(-1, 1))[:, 0]


def _squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out.reshape(out.shape[0], -1) - target.reshape(out.shape[0], -1)) ** 2).sum(dim=1)


def _resolve_loss(loss, call: str) -> Loss:
    if callable(loss):
        return loss
    table = {"cross_entropy": _cross_entropy, "squared_error": _squared_error}
    if loss not in table:
        raise ExpansionError(f"{call}: loss={loss!r}; pass 'cross_entropy' (classifiers), 'squared_error' "
                             "(regression) or a callable (outputs, target) -> per-sample losses")
    return table[loss]


def _prepare(model, x, target, loss, call):
    x = torch.as_tensor(x, dtype=torch.float64).detach()
    loss_fn = _resolve_loss(loss, call)
    with torch.no_grad():
        out = model(x)
    if target is None:
        if loss != "cross_entropy":
            raise ExpansionError(f"{call}: pass target= (the regression targets); with loss={loss!r} the "
                                 "prediction itself has zero loss and nothing to interpret")
        target = out.argmax(dim=1)
    target = torch.as_tensor(target, dtype=torch.float64 if loss != "cross_entropy" else torch.long)
    return x, loss_fn, target


def _derivatives(model, x, target, loss_fn, hessian: str, call):
    """Loss gradient ``(B, ...)`` and a per-sample Hessian-vector product."""
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        losses = loss_fn(model(xg), target)
        (g,) = torch.autograd.grad(losses.sum(), xg, create_graph=hessian == "autograd")
    if hessian == "autograd":
        def hvp(v):
            (hv,) = torch.autograd.grad(_bdot(g, v).sum(), xg, retain_graph=True)
            return hv
    elif hessian == "relu":
        jac = relu_jacobian(model, x)  # (B, c, d)
        probs = torch.softmax(model(x).detach(), dim=1)

        def hvp(v):
            jv = torch.einsum("bcd,bd->bc", jac, v.reshape(v.shape[0], -1))
            a_jv = probs * jv - probs * (probs * jv).sum(dim=1, keepdim=True)
            return torch.einsum("bcd,bc->bd", jac, a_jv).reshape(v.shape)
    elif hessian == "csfd":
        hvp = _csfd_loss_hvp(model, x, target, loss_fn)
    else:
        raise ExpansionError(f"{call}: hessian={hessian!r}; pass 'autograd', 'csfd' or 'relu'")
    return losses.detach(), g.detach(), hvp


def _csfd_loss_hvp(model, x, target, loss_fn):
    """``H_loss v = J^T (d2l/dy2) J v + sum_o dl/dy_o H_o v``: the model's HVPs by complex step."""
    with torch.enable_grad():
        y = model(x).reshape(x.shape[0], -1).detach().requires_grad_(True)
        (dl,) = torch.autograd.grad(loss_fn(y, target).sum(), y, create_graph=True)
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(xg).reshape(x.shape[0], -1)

    def hvp(v):
        hv = csfd_hvp(model, x, v)  # (B, n_out, ...)
        jv = torch.func.jvp(lambda z: model(z).reshape(z.shape[0], -1), (x,), (v,))[1]
        (d2jv,) = torch.autograd.grad(_bdot(dl, jv).sum(), y, retain_graph=True)
        (jt,) = torch.autograd.grad(out, xg, d2jv, retain_graph=True)
        return jt + torch.einsum("bo,bo...->b...", dl.detach(), hv)

    return hvp


def relu_jacobian(model: nn.Module, x) -> torch.Tensor:
    """Input Jacobian of the logits, ``(B, classes, d)`` with ``d`` the flattened input size."""
    x = torch.as_tensor(x, dtype=torch.float64).detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        rows = [torch.autograd.grad(out[:, c].sum(), x, retain_graph=True)[0].reshape(x.shape[0], -1)
                for c in range(out.shape[1])]
    return torch.stack(rows, dim=1)


def relu_input_hessian(model: nn.Module, x) -> torch.Tensor:
    """Closed-form input Hessian of the cross-entropy loss of a piecewise-linear classifier.

    Proposition 1 of the CASO paper: locally the logits are ``W x + b``, so
    ``H = W^T (diag(p) - p p^T) W`` with ``p`` the class probabilities; it does not depend on
    the label and is positive semi-definite.

    Returns
    -------
    torch.Tensor
        ``(B, d, d)`` with ``d`` the flattened input size.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4)).double()
    >>> relu_input_hessian(net, torch.randn(2, 3, dtype=torch.float64)).shape
    torch.Size([2, 3, 3])
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    jac = relu_jacobian(model, x)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    a = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    return jac.transpose(1, 2) @ a @ jac


def _spectral_radius(hvp, like: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Largest eigenvalue magnitude of each sample's Hessian, by power iteration."""
    v = torch.randn(like.shape, generator=torch.Generator().manual_seed(0), dtype=like.dtype)
    lam = torch.zeros(like.shape[0], dtype=like.dtype)
    for _ in range(iterations):
        v = v / v.reshape(v.shape[0], -1).norm(dim=1).clamp(min=1e-300).reshape(-1, *([1] * (v.ndim - 1)))
        hv = hvp(v)
        lam = _bdot(v, hv)
        v = hv
    return lam.abs()


# -- public calls -------------------------------------------------------------------------------

def _interpret(model, x, target, *, second_order, lambda1, lambda2, loss, hessian, sparsity_range,
               smooth_samples, smooth_sigma, seed, max_iter, call) -> Interpretation:
    x, loss_fn, target = _prepare(model, x, target, loss, call)
    points = [x]
    if smooth_samples:
        gen = torch.Generator().manual_seed(seed)
        points = [x + smooth_sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype) for _ in range(smooth_samples)]
    parts = [_derivatives(model, p, target, loss_fn, hessian if second_order else "autograd", call) for p in points]
    g = torch.stack([pt[1] for pt in parts]).mean(dim=0)
    hvps = [pt[2] for pt in parts]
    hvp = (lambda v: torch.stack([h(v) for h in hvps]).mean(dim=0)) if second_order else None
    if lambda2 is None:
        # lambda2 = rho(H) >= L makes 2 lambda2 I - H positive definite with condition number <= 3
        lam2 = (_spectral_radius(hvp, x) if second_order else torch.full((x.shape[0],), 0.5, dtype=x.dtype))
        lam2 = lam2.clamp(min=1e-12)
    else:
        lam2 = _per_sample(lambda2, x)
    if lambda1 == "auto":
        lam1 = _choose_lambda1(model, x, target, loss_fn, g, hvp, lam2, sparsity_range, max_iter)
    else:
        lam1 = _per_sample(lambda1, x)
    delta, objective, it = solve_interpretation(g, hvp, lam1, lam2, max_iter=max_iter)
    sparsity = (delta == 0).reshape(x.shape[0], -1).double().mean(dim=1)
    return Interpretation(delta, lam1, lam2, sparsity, objective, it)


def _choose_lambda1(model, x, target, loss_fn, g, hvp, lam2, sparsity_range, max_iter) -> torch.Tensor:
    """The sparsity-ratio rule, per sample: raise lambda1 tenfold until delta vanishes; among
    the solutions with sparsity in ``sparsity_range`` keep the one with the highest loss at
    ``x + delta``; if none falls in range, halve the first all-zero lambda1 and look again."""
    lo, hi = sparsity_range
    B = x.shape[0]
    best_loss = torch.full((B,), -math.inf, dtype=x.dtype)
    best = torch.full((B,), math.nan, dtype=x.dtype)

    def sparsity_at(lam: torch.Tensor) -> torch.Tensor:
        d, _, _ = solve_interpretation(g, hvp, lam, lam2, max_iter=max_iter, tol=1e-9)
        s = (d == 0).reshape(B, -1).double().mean(dim=1)
        with torch.no_grad():
            value = loss_fn(model(x + d), target)
        better = (s >= lo) & (s <= hi) & (value > best_loss)
        best_loss[better] = value[better]
        best[better] = lam[better]
        return s

    # Every sample at once: raise lambda1 tenfold until its interpretation vanishes
    # (it does once lambda1 >= max |g|, the subgradient condition at delta = 0).
    lam = 1e-6 * g.reshape(B, -1).abs().max(dim=1).values.clamp(min=1e-300)
    first_zero = torch.full((B,), math.nan, dtype=x.dtype)
    for _ in range(12):
        s = sparsity_at(lam)
        newly = (s == 1.0) & first_zero.isnan()
        first_zero[newly] = lam[newly]
        if not first_zero.isnan().any():
            break
        lam = torch.where(first_zero.isnan(), lam * 10.0, lam)
    first_zero = torch.where(first_zero.isnan(), lam, first_zero)
    # Samples with nothing in range: halve down from their first all-zero lambda1 while the
    # sparsity stays above the range, then bisect (geometrically) the bracket that jumped over it.
    upper = first_zero.clone()
    lower = torch.zeros_like(upper)
    for _ in range(30):
        todo = best.isnan()
        if not todo.any():
            break
        lam = torch.where(lower > 0, (lower * upper).sqrt(), upper / 2.0)
        s = sparsity_at(lam)
        upper = torch.where(todo & (s > hi), lam, upper)
        lower = torch.where(todo & (s < lo), lam, lower)
    return torch.where(best.isnan(), upper, best)


def cafo(model: nn.Module, x, target=None, *, lambda1=0.0, lambda2=None, loss="cross_entropy",
         sparsity_range=(0.5, 0.9), smooth_samples: int = 0, smooth_sigma: float = 0.1, seed: int = 0,
         max_iter: int = 300) -> Interpretation:
    """Context-aware first-order interpretation (gradient, L1 and L2 penalties).

    Parameters
    ----------
    model : nn.Module
        Classifier (logits) or regression network; inputs ``(B, ...)``.
    x : array-like ``(B, ...)``
    target : array-like, optional
        Class labels (default: the predicted class) or regression targets (required for
        ``loss='squared_error'``).
    lambda1 : float, (B,) tensor or "auto"
        L1 penalty; ``"auto"`` applies the sparsity-ratio rule per sample.
    lambda2 : float, optional
        L2 penalty (default 0.5: ``delta = soft(g, lambda1)``).
    loss : "cross_entropy", "squared_error" or callable
    smooth_samples, smooth_sigma : average gradients over noisy copies of ``x`` (Smooth CAFO).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    >>> cafo(net, torch.randn(2, 4, dtype=torch.float64), lambda1=0.01).delta.shape
    torch.Size([2, 4])
    """
    return _interpret(model, x, target, second_order=False, lambda1=lambda1, lambda2=lambda2, loss=loss,
                      hessian="autograd", sparsity_range=sparsity_range, smooth_samples=smooth_samples,
                      smooth_sigma=smooth_sigma, seed=seed, max_iter=max_iter,
                      call="cafo(model, x, target)")


def caso(model: nn.Module, x, target=None, *, lambda1=0.0, lambda2=None, loss="cross_entropy",
         hessian: str = "autograd", sparsity_range=(0.5, 0.9), smooth_samples: int = 0,
         smooth_sigma: float = 0.1, seed: int = 0, max_iter: int = 300) -> Interpretation:
    """Context-aware second-order interpretation; Smooth CASO with ``smooth_samples > 0``.

    Parameters are those of :func:`cafo`, plus:

    hessian : {"autograd", "csfd", "relu"}
        Source of Hessian-vector products: double backpropagation, the complex-step engine
        (model HVPs by complex-step backpropagation, chained with the loss), or the closed-form
        Hessian of piecewise-linear classifiers under cross-entropy.
    lambda2 : float, optional
        Default: the Hessian's spectral radius (power iteration), at least its largest
        eigenvalue ``L``, so the objective is strictly concave (``lambda2 > L / 2`` suffices).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> caso(net, torch.randn(2, 4, dtype=torch.float64), lambda1=0.01).delta.shape
    torch.Size([2, 4])
    """
    return _interpret(model, x, target, second_order=True, lambda1=lambda1, lambda2=lambda2, loss=loss,
                      hessian=hessian, sparsity_range=sparsity_range, smooth_samples=smooth_samples,
                      smooth_sigma=smooth_sigma, seed=seed, max_iter=max_iter,
                      call="caso(model, x, target)")
