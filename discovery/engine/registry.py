"""The rule registry: one Taylor rule per primitive, and a table of the forms that reach it.

A primitive is a named operation (``"tanh"``, ``"linear"``, ``"conv"``) with one rule
``rule(ctx, *args, **kwargs)``. A model reaches a primitive through several forms: a module
class (``nn.Tanh``), a function (``torch.tanh``, ``F.tanh``, ``operator.add``) or a tensor
method name (``"tanh"`` for ``x.tanh()``). :data:`ALIASES` maps every form to its primitive
once; a module form may carry an adapter that turns ``(module, *inputs)`` into the
primitive's arguments (``nn.LeakyReLU(0.1)`` becomes ``leaky_relu(x, negative_slope=0.1)``).

The built-in rules live in :mod:`discovery.engine.rules`. Traced graphs resolve each node
here once and keep the result, so every registration bumps :func:`version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from discovery.engine.series import Algebra
from discovery.errors import ExpansionError, UnsupportedLayerError

__all__ = [
    "ALIASES",
    "REGISTRY",
    "Alias",
    "Context",
    "forms_of",
    "register_alias",
    "register_rule",
    "resolve",
    "resolve_module",
    "supported_names",
    "unregister_rule",
    "version",
]

REGISTRY: dict[str, Callable] = {}
"""Primitive name -> its rule."""

ALIASES: dict[object, "Alias"] = {}
"""Module class, function or method name -> the primitive it computes."""

_VERSION = [0]


@dataclass(frozen=True)
class Alias:
    """One form of a primitive.

    ``adapt(*args, **kwargs) -> (args, kwargs)`` maps the form's arguments to the rule's; for
    a module form the arguments start with the module itself. ``None`` passes them unchanged
    (a module form then hands its module to the rule as the first argument).
    """

    primitive: str
    adapt: Callable | None = None


@dataclass
class Context:
    """What a rule may need besides its arguments."""

    algebra: Algebra
    dtype: torch.dtype
    device: torch.device
    where: str = ""

    def tensor(self, value):
        """Cast a floating tensor constant (a weight, a buffer) to the engine's dtype/device."""
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            if value.requires_grad and torch.is_grad_enabled():
                value = value.detach()
            if value.dtype == self.dtype and value.device == self.device:
                return value
            return value.detach().to(device=self.device, dtype=self.dtype)
        if isinstance(value, torch.Tensor):
            return value.detach().to(device=self.device)
        return value


def version() -> int:
    """A counter bumped by every registration (cached graph plans compare it)."""
    return _VERSION[0]


def form_name(key) -> str:
    """How a form reads in messages: ``Tanh``, ``torch.tanh``, ``.tanh()``."""
    if isinstance(key, str):
        return f".{key}()"
    if isinstance(key, type):
        return key.__name__
    name = getattr(key, "__name__", repr(key))
    module = getattr(key, "__module__", None) or ""
    if module.startswith("torch"):
        module = {"torch.nn.functional": "F", "torch._C._VariableFunctions": "torch"}.get(module, "torch")
        return f"{module}.{name}"
    module = module.lstrip("_")  # operator.add lives in _operator
    return f"{module}.{name}" if module and module != "builtins" else name


def register_rule(primitive, *aliases) -> Callable:
    """Decorator: register ``rule(ctx, *args, **kwargs)`` as the primitive ``primitive``.

    Parameters
    ----------
    primitive : str
        The primitive's name. (A module class or function in its place is taken as the first
        alias, and the primitive is named after it.)
    *aliases
        Forms that compute the primitive with the rule's own arguments: module classes (the
        rule then receives the module first), functions, tensor method names. Forms whose
        arguments differ are added with :func:`register_alias` and an adapter.

    Examples
    --------
    A module class with a rule is kept as one node of the traced graph:

    >>> import discovery
    >>> from torch import nn
    >>> class Scale(nn.Module):
    ...     def __init__(self, factor):
    ...         super().__init__()
    ...         self.factor = factor
    ...     def forward(self, x):
    ...         return self.factor * x
    >>> @register_rule("scale", Scale)
    ... def _scale(ctx, module, x):
    ...     return x.map_linear(lambda t: module.factor * t)
    >>> net = nn.Sequential(nn.Linear(1, 1), nn.Tanh(), Scale(3.0)).double()
    >>> e = discovery.expand(net, [[0.0]], 2)
    >>> bool(torch.allclose(e.derivative((0,)), 3.0 * torch.tanh(net[0].bias.detach())))
    True
    >>> unregister_rule("scale")  # leave the registry as it was
    """
    if not isinstance(primitive, str):
        aliases = (primitive, *aliases)
        primitive = form_name(primitive).strip(".()")

    def decorate(rule):
        REGISTRY[primitive] = rule
        _VERSION[0] += 1
        for key in aliases:
            register_alias(key, primitive)
        return rule

    return decorate


def register_alias(key, primitive: str, adapt: Callable | None = None) -> None:
    """Map a module class, function or tensor method name to a registered primitive.

    Parameters
    ----------
    key : type, callable or str
        ``nn.Tanh``, ``torch.tanh`` or ``"tanh"`` (for ``x.tanh()``).
    primitive : str
        A name registered with :func:`register_rule`.
    adapt : callable, optional
        ``adapt(*args, **kwargs) -> (args, kwargs)``: the form's arguments (a module form's
        start with the module) turned into the rule's.

    Examples
    --------
    >>> from torch import nn
    >>> class Tanh64(nn.Tanh):
    ...     pass
    >>> register_alias(Tanh64, "tanh", lambda module, x: ((x,), {}))
    >>> forms_of("tanh")
    ['.tanh()', 'F.tanh', 'Tanh', 'Tanh64', 'torch.tanh']
    >>> del ALIASES[Tanh64]
    """
    call = f"register_alias({form_name(key)}, {primitive!r})"
    if primitive not in REGISTRY:
        raise UnsupportedLayerError(
            f"{call}: no rule named {primitive!r}; register one first with "
            f"discovery.engine.register_rule({primitive!r})(rule). Known: {', '.join(supported_names())}")
    if adapt is not None and not callable(adapt):
        raise ExpansionError(f"{call}: adapt must be a callable (*args, **kwargs) -> (args, kwargs)")
    ALIASES[key] = Alias(primitive, adapt)
    _VERSION[0] += 1


def unregister_rule(primitive: str) -> None:
    """Remove a primitive's rule and every alias that maps to it."""
    REGISTRY.pop(primitive, None)
    for key in [k for k, a in ALIASES.items() if a.primitive == primitive]:
        del ALIASES[key]
    _VERSION[0] += 1


def resolve(key) -> Alias | None:
    """The alias of a function or method name, or ``None`` when it has no rule."""
    try:
        alias = ALIASES.get(key)
    except TypeError:  # an unhashable call target
        return None
    return alias if alias is not None and alias.primitive in REGISTRY else None


def resolve_module(cls: type) -> Alias | None:
    """The alias of a module class or of its nearest registered base class."""
    for base in cls.__mro__:
        alias = ALIASES.get(base)
        if alias is not None and alias.primitive in REGISTRY:
            return alias
    return None


def supported_names() -> list[str]:
    """The registered primitives, sorted."""
    return sorted(REGISTRY)


def forms_of(primitive: str) -> list[str]:
    """Readable names of the forms that reach ``primitive`` (``['Tanh', 'torch.tanh', ...]``)."""
    return sorted(form_name(k) for k, a in ALIASES.items() if a.primitive == primitive)
