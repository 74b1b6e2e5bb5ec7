"""Structure tests on exact derivatives: unused inputs, separability, symmetries, transforms.

Most tests train a small real ensemble (``fit_ensemble``) on a known law and read its exact
derivatives at k-means reference points in the table's units; the verdicts are judged against
the members' disagreement, so each law is checked both where the property holds and where it
does not.
"""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from discovery.engine import expand
from discovery.errors import ExpansionError
from discovery.fit import fit_ensemble
from discovery.interpret import (
    additive_separability,
    affine_variables,
    depends_through,
    multiplicative_separability,
    pair_symmetry,
    polynomial_transforms,
    symmetries,
    unused_variables,
)

F64 = torch.float64


def trained(law, low, high, *, n=1500, members=4, hidden=(32, 32), order=3, seed=0, epochs=300):
    """A trained ensemble of ``law`` on a uniform box and its expansion at 24 k-means centres."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, (n, len(low)))
    fit = fit_ensemble(X, law(*X.T), members=members, hidden=hidden, max_epochs=epochs, patience=50,
                       lbfgs_steps=100, seed=seed, progress=False)
    Z = (X[fit.train_index] - fit.x_mean) / fit.x_scale
    centres = KMeans(24, n_init=2, random_state=seed).fit(Z).cluster_centers_
    return fit, expand(fit.model, torch.from_numpy(centres), order)


def holding(reports):
    return [(r.variables, r.detail["pair"]) for r in reports if r.holds]


# -- trained ensembles --------------------------------------------------------------------------

def test_influence_survives_seventeen_noise_columns(one_thread):
    # y = x1 x2 + x3^2 / 2 among 17 pure-noise columns: every input used to be called unused
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2000, 20))
    y = X[:, 0] * X[:, 1] + 0.5 * X[:, 2] ** 2
    fit = fit_ensemble(X, y, members=3, hidden=(16, 16), max_epochs=150, patience=50, lbfgs_steps=50,
                       progress=False)
    centres = KMeans(24, n_init=2, random_state=0).fit((X - fit.x_mean) / fit.x_scale).cluster_centers_
    report = unused_variables(expand(fit.model, torch.from_numpy(centres), 2))
    assert report.groups == [[0, 1, 2], list(range(3, 20))], np.round(report.statistic, 2)


def test_distance_depends_on_a_difference_only(one_thread):
    fit, e = trained(lambda a, b, c: np.sqrt((a - b) ** 2 + c ** 2), [-1, -1, 0.5], [1, 1, 1.5])
    assert holding(symmetries(e, units=fit)) == [([0, 1], "difference")]
    assert not additive_separability(e).separable
    assert not multiplicative_separability(e, units=fit).separable


def test_product_with_an_exponential_of_a_ratio(one_thread):
    fit, e = trained(lambda x, y, z: x * np.exp(-y / z), [0.5, 0.5, 1.0], [2.0, 2.0, 3.0])
    assert multiplicative_separability(e, units=fit).groups == [[0], [1, 2]]
    assert not additive_separability(e).separable
    assert holding(symmetries(e, units=fit)) == [([1, 2], "ratio")]
    # the standardisation shifts y: read in the network's own units the product is hidden
    assert not multiplicative_separability(e).separable


def test_affine_in_the_friction_coefficient_only(one_thread):
    # the acceleration on an incline, per unit g: sin(theta) - mu cos(theta); nothing separates it
    fit, e = trained(lambda theta, mu: np.sin(theta) - mu * np.cos(theta), [0.1, 0.0], [1.4, 0.8])
    report = affine_variables(e, units=fit)
    assert report.groups == [[1], [0]], np.round(report.statistic, 2)
    assert not additive_separability(e).separable and not report.separable


def test_affine_quiet_on_curved_inputs(one_thread):
    # x exp(-y/z): affine in x (a product), curved in y and z
    fit, e = trained(lambda x, y, z: x * np.exp(-y / z), [0.5, 0.5, 1.0], [2.0, 2.0, 3.0])
    assert affine_variables(e, units=fit).groups == [[0], [1, 2]]
    fit, e = trained(lambda a, b: np.sqrt(a ** 2 + b ** 2), [0.5, 0.5], [2.0, 2.0])
    assert affine_variables(e, units=fit).groups == [[], [0, 1]]


def test_quiet_where_only_a_product_of_inputs_matters(one_thread):
    fit, e = trained(lambda a, b, c: np.sin(a * b) + c, [-2, -2, -1], [2, 2, 1])
    assert holding(symmetries(e, units=fit)) == [([0, 1], "product")]
    assert additive_separability(e).groups == [[0, 1], [2]]
    assert not multiplicative_separability(e, units=fit).separable


def test_quiet_on_a_law_without_pair_symmetry_and_a_general_combination(one_thread):
    fit, e = trained(lambda a, b, c: a + b ** 2 * c, [-1, -1, 0.5], [1, 1, 1.5])
    assert holding(symmetries(e, units=fit)) == []
    assert additive_separability(e).groups == [[0], [1, 2]]
    right = depends_through(e, [1, 2], lambda x: torch.stack([2 * x[:, 0] * x[:, 1], x[:, 0] ** 2], 1), units=fit)
    wrong = depends_through(e, [1, 2], lambda x: torch.stack([x[:, 1], x[:, 0]], 1), units=fit)
    assert right.holds and not wrong.holds, (right.statistic, wrong.statistic)


def test_reciprocal_of_the_target_is_polynomial(one_thread):
    fit, e = trained(lambda a, b: 1.0 / (1.0 + a ** 2 + b), [-1, 0], [1, 1])
    found = {r.detail["transform"]: r.detail["degree"] for r in polynomial_transforms(e, units=fit)}
    assert found["1/y"] == 2, found
    assert found["y"] is None and found["log(y)"] is None, found


def test_no_low_degree_transform_for_a_velocity_addition(one_thread):
    fit, e = trained(lambda a, b: (a + b) / (1 + a * b), [0, 0], [1, 1])
    reports = polynomial_transforms(e, units=fit)
    assert all(r.detail["degree"] is None or r.detail["degree"] >= 2 for r in reports), \
        [(r.detail["transform"], r.detail["by_degree"]) for r in reports]
    assert holding(symmetries(e, units=fit)) == []


# -- exact functions (single model: relative statistic) -----------------------------------------

class _Law(torch.nn.Module):
    def __init__(self, fn, p):
        super().__init__()
        self.fn, self.p = fn, p

    def forward(self, x):
        return self.fn(*(x[:, i] for i in range(self.p))).unsqueeze(1)


def _exact(fn, p, order, shift=0.5, seed=0):
    points = torch.rand(25, p, generator=torch.Generator().manual_seed(seed), dtype=F64) + shift
    return expand(_Law(fn, p), points, order)


@pytest.mark.parametrize("kind, fn", [
    ("difference", lambda a, b, c: torch.exp(a - b) * c),
    ("sum", lambda a, b, c: torch.cos(a + b) + c),
    ("product", lambda a, b, c: torch.log(a * b) * c),
    ("ratio", lambda a, b, c: torch.sin(a / b) + c ** 2),
])
def test_pair_symmetries_of_exact_functions(kind, fn):
    e = _exact(fn, 3, 1)
    assert holding(symmetries(e)) == [([0, 1], kind)]


def test_pair_symmetry_in_original_units():
    # the model sees z = (x - 1) / 2 and predicts (y - 3) / 5 with y = (x0 - x1)^2 + x2
    from types import SimpleNamespace
    units = SimpleNamespace(x_mean=np.ones(3), x_scale=np.array([2.0, 0.5, 1.0]), y_mean=3.0, y_scale=5.0)
    law = _Law(lambda a, b, c: (((1 + 2 * a) - (1 + 0.5 * b)) ** 2 + (1 + c) - 3.0) / 5.0, 3)
    e = expand(law, torch.rand(25, 3, generator=torch.Generator().manual_seed(1), dtype=F64), 1)
    assert pair_symmetry(e, 0, 1, "difference", units=units).holds
    assert not pair_symmetry(e, 0, 1, "difference").holds  # unequal scales hide it in z


@pytest.mark.parametrize("fn, p, expected", [
    (lambda a, b: a + 1.0 / b, 2, ("1/x1", 1)),
    (lambda a, b, c: torch.sqrt((a - b) ** 2 + c ** 2), 3, ("y**2", 2)),
    (lambda a, b: torch.exp(a * b + a), 2, ("log(y)", 2)),
    (lambda a, b: torch.log(a) * b + b ** 2, 2, ("log(x0)", 2)),
])
def test_polynomial_transforms_of_exact_functions(fn, p, expected):
    best = polynomial_transforms(_exact(fn, p, 3))[0]
    assert (best.detail["transform"], best.detail["degree"]) == expected, best.detail


def test_transforms_not_polynomial_for_an_exponential_of_a_ratio():
    reports = polynomial_transforms(_exact(lambda x, y, z: x * torch.exp(-y / z), 3, 3))
    assert not any(r.holds for r in reports)


def test_depends_through_rejects_a_wrong_gradient_shape():
    e = _exact(lambda a, b: a * b, 2, 1)
    with pytest.raises(ExpansionError, match="h_gradient returned shape"):
        depends_through(e, [0, 1], lambda x: x[:, :1])
    with pytest.raises(ExpansionError, match="two distinct inputs"):
        depends_through(e, [0, 0], lambda x: x)
