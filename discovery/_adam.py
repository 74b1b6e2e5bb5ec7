"""Adam for :mod:`discovery.fit`, written out so that training does not load ``torch.optim``.

Constructing ``torch.optim.Adam`` imports ``torch._dynamo`` the first time, which costs one to
two seconds per process: more than a whole fit of a small table. This is the same algorithm
(Kingma & Ba 2015, with bias correction) in the same floating-point order as
``torch.optim.Adam``'s single-tensor update, so it gives the same iterates.
"""

from __future__ import annotations

import torch


class Adam:
    """``torch.optim.Adam(params, lr)`` with default betas and eps, no weight decay."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.step_count = 0
        self.m = [torch.zeros_like(q) for q in self.params]
        self.v = [torch.zeros_like(q) for q in self.params]

    def zero_grad(self) -> None:
        for q in self.params:
            q.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.step_count += 1
        step_size = self.lr / (1 - beta1**self.step_count)
        correction2_sqrt = (1 - beta2**self.step_count) ** 0.5
        for q, m, v in zip(self.params, self.m, self.v):
            g = q.grad
            if g is None:
                continue
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            q.addcdiv_(m, (v.sqrt() / correction2_sqrt).add_(self.eps), value=-step_size)
