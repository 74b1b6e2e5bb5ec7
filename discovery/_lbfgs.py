"""Batched L-BFGS for :mod:`discovery.fit`: every member of an ensemble runs its own L-BFGS."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from discovery._deadline import expired

_CHECK_EVERY = 25  # steps between validation checks (each check syncs with the device)
#: The polish stops once no member's best validation loss fell by this fraction over the last
#: ``_PLATEAU_STEPS`` steps: the fit has converged, or it only chases rows it cannot generalise.
_PLATEAU_DROP = 0.05
_PLATEAU_STEPS = 100


def polish(params, losses, val_losses, keep_improved, steps: int, progress: bool,
            history_size: int = 20, deadline: float | None = None) -> int:
    """Batched L-BFGS: every member runs its own L-BFGS (own curvature pairs, own step length).

    ``steps`` is a cap: the polish ends earlier when no member's best validation loss fell by
    ``_PLATEAU_DROP`` over the last ``_PLATEAU_STEPS`` steps.

    ``losses()`` returns the ``(members,)`` training losses of the current parameters, whose
    leading dimension is the member. Each member takes the unit quasi-Newton step or halves it
    until its own Armijo condition holds, so one badly conditioned member does not slow the
    others down the way one shared line search would. Each member's best validation weights
    are kept by ``keep_improved``. Stops after the first step that ends at or after
    ``deadline`` (a :func:`time.perf_counter` time); returns the steps taken.
    """
    members = params[0].shape[0]
    shapes = [q.shape for q in params]
    sizes = [q[0].numel() for q in params]

    def flat(tensors) -> torch.Tensor:
        return torch.cat([t.reshape(members, -1) for t in tensors], dim=1)

    def assign(x: torch.Tensor) -> None:
        with torch.no_grad():
            for q, part, shape in zip(params, torch.split(x, sizes, dim=1), shapes):
                q.copy_(part.reshape(shape))

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assign(x)
        for q in params:
            q.grad = None
        f = losses()
        f.sum().backward()
        return f.detach(), flat([q.grad for q in params])

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=1)

    x = flat([q.detach() for q in params]).clone()
    f, g = evaluate(x)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    first = True
    best, checks = None, []  # each member's best validation loss so far, at every check
    # A member whose line search fails (its loss is at the precision floor) stops moving.
    active = torch.ones_like(f, dtype=torch.bool)
    bar = tqdm(total=steps, desc="fit: L-BFGS", disable=not progress, leave=False)
    for step in range(steps):
        q = -g
        alphas = []
        for s, y, rho in reversed(pairs):
            a = rho * dot(s, q)
            q = q - a[:, None] * y
            alphas.append(a)
        if pairs:
            s, y, rho = pairs[-1]
            yy = dot(y, y)
            gamma = torch.where(rho > 0, 1.0 / (rho * yy).clamp_min(1e-300), torch.ones_like(yy))
            q = q * gamma[:, None]
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            b = rho * dot(y, q)
            q = q + (a - b)[:, None] * s
        direction = q
        slope = dot(g, direction)
        descent = slope < 0
        direction = torch.where(descent[:, None], direction, -g)
        slope = torch.where(descent, slope, -dot(g, g))
        if first:
            t = (1.0 / g.abs().sum(dim=1).clamp_min(1e-12)).clamp(max=1.0)
            first = False
        else:
            t = torch.ones_like(f)
        accepted = ~active
        x_new, f_new, g_new = x, f, g
        for _ in range(12):
            trial = torch.where(accepted[:, None], x_new, x + t[:, None] * direction)
            f_try, g_try = evaluate(trial)
            ok = (f_try <= f + 1e-4 * t * slope) & torch.isfinite(f_try) & ~accepted
            x_new = torch.where(ok[:, None], trial, x_new)
            f_new = torch.where(ok, f_try, f_new)
            g_new = torch.where(ok[:, None], g_try, g_new)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        active = active & accepted
        s_vec, y_vec = x_new - x, g_new - g
        sy = dot(s_vec, y_vec)
        rho = torch.where(sy > 1e-12 * dot(s_vec, s_vec).sqrt() * dot(y_vec, y_vec).sqrt(),
                          1.0 / sy, torch.zeros_like(sy))
        pairs.append((s_vec, y_vec, rho))
        if len(pairs) > history_size:
            pairs.pop(0)
        x, f, g = x_new, f_new, g_new
        if (step + 1) % _CHECK_EVERY == 0 or step + 1 == steps:
            assign(x)
            val = val_losses()
            keep_improved(val)
            bar.update(_CHECK_EVERY if (step + 1) % _CHECK_EVERY == 0 else steps % _CHECK_EVERY)
            best = val.detach() if best is None else torch.minimum(best, val.detach())
            checks.append(best.clone())
            back = _PLATEAU_STEPS // _CHECK_EVERY
            if len(checks) > back and not bool((checks[-1] < (1 - _PLATEAU_DROP) * checks[-1 - back]).any()):
                break
        if not bool(active.any()) or expired(deadline):
            assign(x)
            keep_improved(val_losses())
            break
    assign(x)
    bar.close()
    return step + 1 if steps > 0 else 0
