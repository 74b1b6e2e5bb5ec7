"""Small modules the engine knows by name (SIREN-style sine activations)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Sine"]


class Sine(nn.Module):
    """``sin(w0 * x)``, the activation of SIREN networks.

    Parameters
    ----------
    w0 : float
        Frequency factor (30.0 is the usual choice for a SIREN's first layer).

    Examples
    --------
    >>> import torch
    >>> Sine(2.0)(torch.zeros(3))
    tensor([0., 0., 0.])
    """

    def __init__(self, w0: float = 1.0):
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"
