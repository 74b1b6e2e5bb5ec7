"""The HOPE paper's backward rule versus ours: equal for one hidden layer, wrong beyond.

The paper's linear-layer rule (Eq. 29) propagates only unmixed derivatives of hidden units, so
the cross terms d^2 y / dh_i dh_j that a second hidden layer creates are lost. With two hidden
tanh layers (width 16, seed 1, x0 = (0.3, -0.5)) its d^2 y / dx_0^2 is -0.01023 against the
true -0.00208 (about 5x off; 47% of the largest second derivative), while the Taylor engine
matches autograd to round-off.
"""

from __future__ import annotations

import pytest
import torch

import discovery
from oracle import all_partials, assert_partials_match, mlp, multi_indices
from paper_rule import paper_mixed, paper_unmixed

X0 = torch.tensor([[0.3, -0.5], [-0.2, 0.4]], dtype=torch.float64)


def _relative_by_order(values: dict, oracle: dict, b: int) -> dict[int, float]:
    """Worst |a - b| / max(|b|, scale of that order) for point ``b``, per total order."""
    errors: dict[int, float] = {}
    for k in sorted({sum(a) for a in values}):
        alphas = [a for a in values if sum(a) == k]
        scale = max(abs(float(oracle[a][b, 0])) for a in alphas)
        errors[k] = max(abs(values[a] - float(oracle[a][b, 0])) / max(abs(float(oracle[a][b, 0])), scale, 1e-300)
                        for a in alphas)
    return errors


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "sine"])
def test_one_hidden_layer_paper_rule_equals_ours(act):
    net = mlp(2, 16, 1, act, seed=1, gain=1.0)
    e = discovery.expand(net, X0, 6)
    oracle = all_partials(net, X0, 6)  # nested autograd: independent of both rules
    assert_partials_match(e, oracle, 1e-10, f"{act}: ours")
    every_alpha = [a for a in multi_indices(2, 6) if sum(a) >= 1]
    for b in range(len(X0)):
        paper = paper_mixed(net, X0[b], 6)
        # the rule must produce every mixed partial of order 1..6, not a subset of them
        assert sorted(paper) == sorted(every_alpha), f"{act}: the paper's rule returned {sorted(paper)}"
        errors = _relative_by_order(paper, oracle, b)
        assert sorted(errors) == [1, 2, 3, 4, 5, 6]
        assert max(errors.values()) <= 1e-10, f"{act}: paper vs autograd per order {errors}"
    # and the unmixed form (Eq. 28) gives the pure derivatives
    unmixed = paper_unmixed(net, X0[0], 6)
    for k in range(1, 7):
        torch.testing.assert_close(unmixed[k - 1, 0], oracle[(k, 0)][0, 0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(unmixed[k - 1, 1], oracle[(0, k)][0, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act,depth", [("tanh", 2), ("tanh", 3), ("sigmoid", 2), ("sine", 2)])
def test_two_or_more_hidden_layers_ours_exact_paper_not(act, depth):
    net = mlp(2, 16, depth, act, seed=1, gain=1.0)
    oracle = all_partials(net, X0, 4)
    assert_partials_match(discovery.expand(net, X0, 4), oracle, 1e-10, f"{act} depth {depth}")
    for b in range(len(X0)):
        paper = paper_mixed(net, X0[b], 4)
        errors = _relative_by_order(paper, oracle, b)
        assert errors[1] <= 1e-12, "the first derivative is exact for any depth"
        assert errors[2] > 0.05, f"{act} depth {depth}: the paper's rule was expected to miss cross terms: {errors}"


def test_size_of_the_paper_rule_error_two_hidden_tanh_layers():
    net = mlp(2, 16, 2, "tanh", seed=1, gain=1.0)
    x0 = X0[:1]
    oracle = all_partials(net, x0, 2)
    paper = paper_unmixed(net, x0[0], 2)
    truth = float(oracle[(2, 0)][0, 0])
    ours = float(discovery.expand(net, x0, 2).derivative((2, 0))[0, 0])
    assert abs(ours - truth) <= 1e-12 * abs(truth)
    assert abs(truth - (-0.0020783)) < 1e-6 and abs(float(paper[1, 0]) - (-0.0102340)) < 1e-6
    assert abs(float(paper[1, 0]) - truth) > 3 * abs(truth)
