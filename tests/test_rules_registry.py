"""The rule registry: one rule per primitive, every form mapped to a primitive once.

The exactness of each primitive's rule is checked in ``test_engine_exactness.py`` (one case
per primitive); here: every alias reaches a registered rule and is exercised by a case, a
registration takes effect on a model whose graph is already cached (and an unregistration
too), and a cached graph resolves its rules once, not on every expansion.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import discovery
import discovery.engine.trace as trace_module
from discovery.engine.registry import (
    ALIASES,
    REGISTRY,
    forms_of,
    form_name,
    register_alias,
    register_rule,
    resolve,
    resolve_module,
    unregister_rule,
)
from discovery.errors import UnsupportedLayerError
from oracle import CASES, all_partials, assert_partials_match, keys_used, mlp

RTOL = 1e-10
AT = torch.tensor([[0.31, -0.42], [-0.73, 0.18], [0.12, 0.87]], dtype=torch.float64)


@pytest.mark.parametrize("key", list(ALIASES), ids=[form_name(k) for k in ALIASES])
def test_every_alias_resolves_to_a_registered_primitive(key):
    alias = ALIASES[key]
    assert alias.primitive in REGISTRY, f"{form_name(key)} maps to {alias.primitive!r}, which has no rule"
    # The engine's own lookup (the MRO walk for modules) lands on the same primitive.
    found = resolve_module(key) if isinstance(key, type) else resolve(key)
    assert found is not None and found.primitive == alias.primitive
    assert form_name(key) in forms_of(alias.primitive)


def test_one_rule_per_primitive():
    """A rule object registered under two names would be one primitive spelt twice."""
    names_of: dict = {}
    for name, rule in REGISTRY.items():
        names_of.setdefault(id(rule), []).append(name)
    twice = [names for names in names_of.values() if len(names) > 1]
    assert not twice, f"one rule registered as several primitives: {twice}"
    assert all(forms_of(name) for name in REGISTRY), [n for n in REGISTRY if not forms_of(n)]


@functools.cache
def _aliases_exercised() -> frozenset:
    used = set()
    for case in CASES:
        used |= keys_used(case.build(), ALIASES)
    return frozenset(used)


@pytest.mark.parametrize("key", list(ALIASES), ids=[form_name(k) for k in ALIASES])
def test_every_alias_is_exercised_by_a_case(key):
    """A module form's adapter (its settings turned into arguments) is code too: some case in
    tests/oracle.py must go through it, so the exactness test checks it against autograd."""
    if key not in _aliases_exercised():
        pytest.fail(f"no case in tests/oracle.py CASES uses {form_name(key)}; add it to one")


def _tanhshrink_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 5), nn.Tanhshrink(), nn.Linear(5, 1)).double().eval()


def test_registering_after_a_failure_takes_effect_on_the_cached_model():
    net = _tanhshrink_net()
    with pytest.raises(UnsupportedLayerError, match="Tanhshrink"):
        discovery.expand(net, AT, 4)

    @register_rule("tanhshrink")
    def _tanhshrink(ctx, x):  # x - tanh(x), from two existing primitives
        return REGISTRY["sub"](ctx, x, REGISTRY["tanh"](ctx, x))

    try:
        register_alias(nn.Tanhshrink, "tanhshrink", lambda module, x: ((x,), {}))
        e = discovery.expand(net, AT, 4)
        assert_partials_match(e, all_partials(net, AT, 4), RTOL, "registered Tanhshrink")
    finally:
        unregister_rule("tanhshrink")
    assert nn.Tanhshrink not in ALIASES and "tanhshrink" not in REGISTRY
    with pytest.raises(UnsupportedLayerError, match="Tanhshrink"):
        discovery.expand(net, AT, 4)


class _Swish(nn.Module):
    """``x * sigmoid(x)`` through a function the engine has no rule for."""

    def forward(self, x):
        return x * torch.special.expit(x)


def test_alias_maps_a_new_module_to_an_existing_primitive():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 4), _Swish(), nn.Linear(4, 1)).double().eval()
    with pytest.raises(UnsupportedLayerError, match="expit"):
        discovery.expand(net, AT, 4)
    register_alias(_Swish, "silu", lambda module, x: ((x,), {}))
    try:
        e = discovery.expand(net, AT, 4)
        assert_partials_match(e, all_partials(net, AT, 4), RTOL, "Swish as silu")
    finally:
        del ALIASES[_Swish]


def test_module_form_without_adapter_receives_the_module():
    class Scale(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return self.factor * x

    seen = []

    @register_rule(Scale)  # a class in place of the name: the primitive is named after it
    def _scale(ctx, module, x):
        seen.append(module)
        return x.map_linear(lambda t: module.factor * t)

    try:
        assert resolve_module(Scale).primitive == "Scale" and forms_of("Scale") == ["Scale"]
        torch.manual_seed(2)
        net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), Scale(-2.5), nn.Linear(3, 1)).double().eval()
        e = discovery.expand(net, AT, 3)
        assert seen and seen[0] is net[2]
        assert_partials_match(e, all_partials(net, AT, 3), RTOL, "Scale")
    finally:
        unregister_rule("Scale")


def test_alias_to_an_unknown_primitive_is_refused():
    with pytest.raises(UnsupportedLayerError, match="register_rule\\('no_such'\\)"):
        register_alias(nn.Hardswish, "no_such")
    assert nn.Hardswish not in ALIASES


def test_rules_are_resolved_once_per_cached_graph(monkeypatch):
    calls = []

    def counting(fn):
        def wrapper(key):
            calls.append(key)
            return fn(key)

        return wrapper

    monkeypatch.setattr(trace_module, "resolve", counting(resolve))
    monkeypatch.setattr(trace_module, "resolve_module", counting(resolve_module))
    net = mlp(2, 8, 3, "tanh", seed=3)
    discovery.expand(net, AT, 3)
    first = len(calls)
    assert first > 0
    for order in (2, 4):  # further expansions of the unchanged model reuse its plan
        discovery.expand(net, AT[:2], order)
        discovery.expand(net, AT, order, mixed=False)
    assert len(calls) == first, f"{len(calls) - first} rule look-ups after the graph was planned"
