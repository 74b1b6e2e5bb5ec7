"""Training small smooth networks on a table; knows nothing of Taylor series or SymPy.

:func:`fit_ensemble` trains every member of an ensemble at once as one batched model (weights of
shape ``(members, in, out)``): full-batch Adam with per-member early stopping on a validation
split, then a full-batch L-BFGS polish kept per member only where it does not hurt validation.
A table larger than ``max_rows`` is trained on a seeded random sample of that many rows, so the
cost of training stops growing with the table once the sample determines the law; every row
can still be used where it is cheap (least-squares refits and scores downstream).
The result exports the whole ensemble as one plain ``nn.Sequential`` of ``nn.Linear`` and
activation modules with block-diagonal weights, so one engine pass expands every member.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from discovery._adam import Adam
from discovery._deadline import expired
from discovery._lbfgs import polish as _polish
from discovery._rows import disjoint, sorted_rows
from discovery.errors import DataError
from discovery.nn import Sine

__all__ = ["ACTIVATIONS", "FittedEnsemble", "fit_ensemble"]

#: Smooth activations the ensemble can use; each value builds the module placed in the export.
ACTIVATIONS = {
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "sine": lambda: Sine(1.0),
}

_CHECK_EVERY = 25  # epochs between host-side stopping checks (each check syncs with the device)
MAX_ROWS = 2_000
"""Default ``max_rows`` of :func:`fit_ensemble`: rows at most used for training plus validation.

The merge refits, snaps and scores on every row, so the networks only have to settle the law's
structure. ``experiments/training_rows.py`` runs ``discover`` with 2,000 and 10,000 training rows
on four textbook laws sampled at 20,000 rows (thin_lens, arrhenius, compton, malus; noise 0 and
1 %): 2,000 rows solved 6 of the 8 cases, 10,000 rows 4 (arrhenius, where the larger sample
spent the time budget on training and returned approximations), with a median of 70 s against
80 s on a busy 2-core machine. The bundled and textbook tables (2,000 rows before the test split) are
trained on fewer rows than this anyway."""
_PREDICT_ELEMENTS = 1 << 21  # activation values per prediction chunk (16 MB in float64)

_log = logging.getLogger("discovery.fit")


@dataclass
class FittedEnsemble:
    """An ensemble of trained networks and the standardisation around them.

    Attributes
    ----------
    model : torch.nn.Module
        One ``nn.Sequential`` (float64, CPU) mapping standardised inputs
        ``z = (x - x_mean) / x_scale`` of shape ``(B, p)`` to the standardised prediction of every
        member, shape ``(B, members)``.
    x_mean, x_scale : numpy.ndarray
        ``(p,)`` input standardisation.
    y_mean, y_scale : float
        Target standardisation: ``y = y_mean + y_scale * model(z)``.
    members : int
        Number of networks.
    val_rmse : numpy.ndarray
        ``(members,)`` validation RMSE of each member, in the target's units.
    train_index, val_index : numpy.ndarray
        Rows of the input used for training and validation (sorted indices into ``X``; on a
        table larger than ``max_rows`` they cover a random sample, the other rows are unused).
    rows_total : int
        Rows of the input; ``rows_used`` of them were used (``train_rows + val_rows``).
    history : list of dict
        Per member: ``train`` and ``val`` loss curves (standardised MSE per Adam epoch),
        ``best_epoch``, ``val_before_polish``, ``val_after_polish`` and ``polish_kept``.
    cut : str
        What the ``deadline`` of :func:`fit_ensemble` cut short ("" when nothing was).
    """

    model: nn.Module
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    members: int
    val_rmse: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    history: list = field(default_factory=list)
    activation: str = "tanh"
    hidden: tuple = (32, 32)
    seconds: float = 0.0
    rows_total: int = 0
    cut: str = ""

    @property
    def n_features(self) -> int:
        """Number of input features."""
        return int(self.x_mean.shape[0])

    @property
    def train_rows(self) -> int:
        """Rows the networks were trained on."""
        return int(len(self.train_index))

    @property
    def val_rows(self) -> int:
        """Rows held out for early stopping and ``val_rmse`` (0 when the training rows served)."""
        return int(len(self.val_index))

    @property
    def rows_used(self) -> int:
        """Rows used for training or validation."""
        return self.train_rows + self.val_rows

    @property
    def subsampled(self) -> bool:
        """Whether training used a sample of the rows rather than all of them."""
        return self.rows_used < self.rows_total

    def predict_members(self, X, chunk_rows: int | None = None) -> np.ndarray:
        """Predictions of every member, ``(n, members)``, in the target's units.

        ``chunk_rows`` rows are evaluated at a time (default: as many as keep each layer's
        activations near 2 million values), so memory stays bounded on large tables.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).uniform(-1, 1, (200, 2))
        >>> fit = fit_ensemble(X, X[:, 0] + X[:, 1], members=2, max_epochs=50, lbfgs_steps=0,
        ...                    progress=False)
        >>> fit.predict_members(X[:3]).shape
        (3, 2)
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and self.n_features == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(
                f"FittedEnsemble.predict(X): X has shape {X.shape}; pass an array of shape "
                f"(n, {self.n_features})"
            )
        # Chunks bound the (rows x hidden units) activations, e.g. on a million rows.
        widest = max((m.out_features for m in self.model.modules() if isinstance(m, nn.Linear)), default=1)
        rows = max(1, int(chunk_rows) if chunk_rows is not None else _PREDICT_ELEMENTS // max(widest, self.members))
        out = np.empty((X.shape[0], self.members))
        with torch.no_grad():
            for s in range(0, X.shape[0], rows):
                z = torch.from_numpy((X[s:s + rows] - self.x_mean) / self.x_scale)
                out[s:s + rows] = self.model(z).numpy()
        return self.y_mean + self.y_scale * out

    def predict(self, X) -> np.ndarray:
        """Ensemble mean prediction, ``(n,)``, in the target's units."""
        return self.predict_members(X).mean(axis=1)


class _BatchedMLP(nn.Module):
    """``members`` independent MLPs evaluated together with batched matrix products."""

    def __init__(self, sizes: Sequence[int], members: int, activation: str,
                 generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # Glorot-normal weights, small uniform biases; every member draws its own.
            std = math.sqrt(2.0 / (fan_in + fan_out))
            w = torch.randn(members, fan_in, fan_out, generator=generator, dtype=torch.float64) * std
            bound = 1.0 / math.sqrt(fan_in)
            b = (torch.rand(members, 1, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w.to(dtype)))
            self.biases.append(nn.Parameter(b.to(dtype)))
        self.act = ACTIVATIONS[activation]()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` (N, p) shared by all members -> (members, N)."""
        h = torch.matmul(z, self.weights[0]) + self.biases[0]
        for w, b in zip(self.weights[1:], self.biases[1:]):
            h = torch.baddbmm(b, self.act(h), w)
        return h.squeeze(-1)


def _export(net: _BatchedMLP, activation: str) -> nn.Sequential:
    """The batched ensemble as one plain Sequential with block-diagonal float64 weights."""
    ws = [w.detach().to("cpu", torch.float64) for w in net.weights]
    bs = [b.detach().to("cpu", torch.float64) for b in net.biases]
    members = ws[0].shape[0]
    layers: list[nn.Module] = []
    for k, (w, b) in enumerate(zip(ws, bs)):
        fan_in, fan_out = w.shape[1], w.shape[2]
        if k == 0:
            weight = w.permute(0, 2, 1).reshape(members * fan_out, fan_in)
        else:
            weight = torch.block_diag(*[w[m].T for m in range(members)])
        linear = nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(b.reshape(-1))
        layers.append(linear)
        if k < len(ws) - 1:
            layers.append(ACTIVATIONS[activation]())
    model = nn.Sequential(*layers)
    model.requires_grad_(False)
    return model.eval()


def _resolve_device(device, call: str = "fit_ensemble(X, y, ...)",
                    fix: str = "pass device='cpu', or device='auto' to use a GPU only when present") -> torch.device:
    """``device`` as a torch.device that exists here; a DataError naming the problem and ``fix`` otherwise."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(f"{call}: device {device!r} is not a device name; {fix}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DataError(f"{call}: device {device!r} is unavailable ({why}); {fix}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DataError(f"{call}: device {device!r} is unavailable (only {torch.cuda.device_count()} CUDA "
                            f"device(s)); {fix}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DataError(f"{call}: device {device!r} is unavailable (no MPS backend here); {fix}")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DataError(f"{call}: device {device!r} is not supported for training; {fix}")
    return dev


def _split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = min(max(n_val, 1), n - 2)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _sample(n: int, max_rows: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``max_rows`` random rows of ``n``, split like :func:`_split` splits a table of that size."""
    rows = rng.permutation(n)[:max_rows]
    train, val = _split(max_rows, val_fraction, rng)
    return np.sort(rows[train]), np.sort(rows[val])


def _given_split(split, n: int, max_rows: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The caller's ``(train, validation)`` positions, checked, and sampled in proportion above
    ``max_rows``. The random stream advances exactly as :func:`_split`'s would, so a given split
    equal to the internal one trains the same model bit for bit."""
    call = "fit_ensemble(X, y, split=(train_rows, validation_rows))"
    try:
        train, val = (sorted_rows(part) for part in split)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{call}: pass two sequences of integer row positions ({exc})") from None
    if len(train) < 2 or (len(train) and (train.min() < 0 or train.max() >= n)) or \
            (len(val) and (val.min() < 0 or val.max() >= n)) or not disjoint(train, val, n):
        raise DataError(f"{call}: pass disjoint positions in 0..{n - 1}, at least two of them for training")
    rng.permutation(n)  # the draw _split makes, so the bootstrap that follows is unchanged
    if max_rows is not None and len(train) + len(val) > max_rows:
        keep = max_rows / (len(train) + len(val))
        train = np.sort(rng.permutation(train)[: max(2, int(round(keep * len(train))))])
        val = np.sort(rng.permutation(val)[: int(round(keep * len(val)))])
    return train, val


def check_sample_weight(sample_weight, n: int, call: str) -> np.ndarray | None:
    """``sample_weight`` as a float64 ``(n,)`` array (``None`` stays ``None``); a DataError
    unless it is ``n`` finite, non-negative numbers, not all zero."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{call}: sample_weight is not numeric; pass {n} non-negative numbers") from None
    if w.shape != (n,):
        raise DataError(f"{call}: sample_weight has shape {w.shape}; pass one weight per row, shape ({n},)")
    if not np.isfinite(w).all():
        raise DataError(f"{call}: sample_weight has NaN or infinite values; pass finite weights")
    if (w < 0).any():
        raise DataError(f"{call}: sample_weight has {int((w < 0).sum())} negative values; pass weights >= 0")
    if not w.sum() > 0:
        raise DataError(f"{call}: every sample_weight is 0; give some rows a positive weight")
    return w


def _mean_std(a: np.ndarray, w: np.ndarray | None):
    """Mean and (population) standard deviation along rows, weighted by ``w`` when given."""
    if w is None:
        return a.mean(axis=0), a.std(axis=0)
    mean = np.average(a, axis=0, weights=w)
    return mean, np.sqrt(np.average((a - mean) ** 2, axis=0, weights=w))


def _row_weights(counts: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Each member's training-row weights, ``(members, rows)``, summing to 1: its bootstrap
    counts times the rows' sample weights."""
    if w is not None:
        counts = counts * w
        empty = np.flatnonzero(counts.sum(axis=1) <= 0)
        if empty.size:
            raise DataError(f"fit_ensemble(X, y, sample_weight=w): the bootstrap resample of member(s) "
                            f"{empty.tolist()} drew only rows of weight 0; give more rows a positive weight "
                            "or pass bootstrap=False")
    return counts / counts.sum(axis=1, keepdims=True)


def _weighted_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-member weighted mean squared error: ``pred`` (members, N), ``weights`` (members, N)
    or (N,) summing to 1 -> (members,)."""
    return (weights * (pred - target) ** 2).sum(dim=1)


def _stage(message: str, start: float) -> None:
    """One log line per finished stage where no progress bar can show it (stderr is not a terminal)."""
    isatty = getattr(sys.stderr, "isatty", None)
    if not (callable(isatty) and isatty()):
        _log.info("%s, %.1f s", message, time.perf_counter() - start)


def _check_inputs(X, y, members, hidden, activation, val_fraction, max_rows) -> tuple[np.ndarray, np.ndarray]:
    call = "fit_ensemble(X, y)"
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"{call}: X has shape {X.shape} and y {y.shape}; pass X (n, p) and y (n,)")
    if X.shape[0] < 4:
        raise DataError(f"{call}: only {X.shape[0]} rows; pass at least 4")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise DataError(f"{call}: X or y has NaN or infinite values; load data with load_table first")
    if np.ptp(y) == 0:
        raise DataError(f"{call}: y is constant; pass a target that varies")
    if not isinstance(members, (int, np.integer)) or members < 1:
        raise DataError(f"fit_ensemble(members={members!r}): pass a positive integer")
    if not hidden or any((not isinstance(h, (int, np.integer))) or h < 1 for h in hidden):
        raise DataError(
            f"fit_ensemble(hidden={hidden!r}): pass a tuple of positive layer widths, e.g. (32, 32)"
        )
    if activation not in ACTIVATIONS:
        raise DataError(
            f"fit_ensemble(activation={activation!r}): pass one of {', '.join(map(repr, ACTIVATIONS))}"
        )
    if not 0 <= val_fraction < 1:
        raise DataError(f"fit_ensemble(val_fraction={val_fraction!r}): pass a number in [0, 1)")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer))
                                 or max_rows < 4):
        raise DataError(f"fit_ensemble(max_rows={max_rows!r}): pass an integer >= 4, or None to train on every row")
    return X, y


def fit_ensemble(
    X,
    y,
    *,
    members: int = 5,
    hidden: Sequence[int] = (32, 32),
    activation: str = "tanh",
    seed: int = 0,
    device="auto",
    val_fraction: float = 0.2,
    max_epochs: int = 300,
    patience: int = 100,
    lbfgs_steps: int = 300,
    lr: float = 1e-2,
    bootstrap: bool = True,
    dtype: torch.dtype = torch.float32,
    threads: int | None = 1,
    progress: bool = True,
    max_rows: int | None = MAX_ROWS,
    split: tuple | None = None,
    sample_weight=None,
    deadline: float | None = None,
) -> FittedEnsemble:
    """Train an ensemble of small smooth MLPs on ``y = f(X)``.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Features (finite).
    y : array-like, shape (n,)
        Target (finite, not constant).
    members : int, default 5
        Networks trained together; each has its own initialisation and bootstrap resample.
    hidden : sequence of int, default (32, 32)
        Hidden layer widths of every member.
    activation : {"tanh", "silu", "sine"}
        Smooth activation of the hidden layers (``"sine"`` is ``Sine(1.0)``).
    seed : int, default 0
        Seeds the split, the bootstrap and the initialisation; same seed, same model (on CPU,
        bit for bit).
    device : "auto", str or torch.device
        ``"auto"`` trains on CUDA when available. The returned model is always on the CPU.
    val_fraction : float, default 0.2
        Share of rows held out for early stopping and ``val_rmse`` (0 uses the training rows).
    max_epochs, patience : int
        Full-batch Adam steps at most; a member stops improving after ``patience`` epochs
        without a better validation loss (its best weights are kept).
    lbfgs_steps : int, default 300
        L-BFGS iterations of the final polish (0 skips it). Kept per member only where the
        validation loss does not get worse.
    lr : float, default 1e-2
        Adam learning rate.
    bootstrap : bool, default True
        Weight each member's training rows by its own bootstrap resample.
    dtype : torch.dtype, default torch.float32
        Training precision; the exported model is float64 either way. float32 trains about
        2-3 times faster on CPU and reaches the same validation error (the optimiser, not the
        precision, limits it at these sizes).
    threads : int or None, default 1
        CPU threads torch uses while training (restored afterwards); these small models train
        as fast on one thread as on two and much faster when the cores are busy. ``None``
        leaves torch's setting alone.
    progress : bool, default True
        Show a progress bar. Where stderr is not a terminal, each finished stage is also logged
        (logger ``"discovery.fit"``, level INFO) with its elapsed time.
    max_rows : int or None, default 2000
        Rows at most used for training plus validation. A larger table is trained on a seeded
        random sample of ``max_rows`` rows (split by ``val_fraction`` like a table of that size),
        so training time stops growing with the table; a smaller one is trained exactly as
        without the option. ``None`` trains on every row.
    split : (train_rows, validation_rows), optional
        The caller's own disjoint split of the rows (integer positions). Without it the rows are
        split at random by ``val_fraction``. Above ``max_rows`` a seeded sample of each part is
        used, in proportion. ``discover`` passes its split so that its validation rows are the
        networks' validation rows by construction.
    sample_weight : array-like, shape (n,), optional
        Non-negative per-row weights (finite, not all zero). Each row's squared error counts
        ``w`` times in the training loss (Adam and the polish; with ``bootstrap`` they multiply
        each member's bootstrap counts), in the validation loss and in ``val_rmse``; the
        standardisation uses weighted means and spreads. So an integer weight is a row repeated
        that many times and a zero weight a row left out. ``None`` weights every row equally.
    deadline : float, optional
        A :func:`time.perf_counter` time: training stops at the first epoch (at least one) or
        L-BFGS step that ends after it, keeps each member's best weights so far, and says so in
        ``cut`` (and in a log line). ``None``: no limit.

    Returns
    -------
    FittedEnsemble

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    >>> fit = fit_ensemble(X, (X[:, 0] ** 2 + X[:, 1]) / 2, members=3, progress=False)
    >>> fit.model(torch.zeros(1, 2, dtype=torch.float64)).shape
    torch.Size([1, 3])
    >>> bool(fit.val_rmse.max() < 1e-2)
    True
    """
    dev = _resolve_device(device)
    previous = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(int(threads))
    try:
        return _fit(X, y, members=members, hidden=tuple(hidden), activation=activation, seed=seed,
                    dev=dev, val_fraction=val_fraction, max_epochs=max_epochs, patience=patience,
                    lbfgs_steps=lbfgs_steps, lr=lr, bootstrap=bootstrap, dtype=dtype,
                    progress=progress, max_rows=max_rows, split=split, sample_weight=sample_weight,
                    deadline=deadline)
    finally:
        torch.set_num_threads(previous)


def _fit(X, y, *, members, hidden, activation, seed, dev, val_fraction, max_epochs, patience,
         lbfgs_steps, lr, bootstrap, dtype, progress, max_rows, split=None, sample_weight=None,
         deadline=None) -> FittedEnsemble:
    start = time.perf_counter()
    cut = []
    X, y = _check_inputs(X, y, members, hidden, activation, val_fraction, max_rows)
    n, p = X.shape
    sw = check_sample_weight(sample_weight, n, "fit_ensemble(X, y, sample_weight=w)")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if split is not None:
        train_index, val_index = _given_split(split, n, max_rows, rng)
    elif max_rows is None or n <= max_rows:
        train_index, val_index = _split(n, val_fraction, rng)
    else:
        train_index, val_index = _sample(n, int(max_rows), val_fraction, rng)
    rows_text = (f"{len(train_index)} training + {len(val_index)} validation of {n} rows" if val_index.size
                 else f"{len(train_index)} of {n} rows, no validation split")

    w_tr = w_va = None
    if sw is not None:
        w_tr, w_va = sw[train_index], sw[val_index if val_index.size else train_index]
        for part, w in (("training", w_tr), ("validation", w_va)):
            if not w.sum() > 0:
                raise DataError(f"fit_ensemble(X, y, sample_weight=w): every {part} row has weight 0; give some "
                                f"{part} rows a positive weight (or pass split= with rows that have one)")
    x_mean, x_scale = _mean_std(X[train_index], w_tr)
    x_scale = np.where(x_scale > 0, x_scale, 1.0)
    y_mean, y_scale = (float(v) for v in _mean_std(y[train_index], w_tr))
    y_scale = y_scale or 1.0

    # Only the rows in use are standardised and moved (elementwise, so the values are the same
    # as standardising the whole table): memory stays bounded on a table of millions of rows.
    def rows_on_device(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.from_numpy((X[index] - x_mean) / x_scale).to(dev, dtype)
        return z, torch.from_numpy((y[index] - y_mean) / y_scale).to(dev, dtype)

    z_tr, t_tr = rows_on_device(train_index)
    z_va, t_va = rows_on_device(val_index) if val_index.size else (z_tr, t_tr)

    if bootstrap:
        counts = rng.multinomial(len(train_index), np.full(len(train_index), 1 / len(train_index)),
                                 size=members)
    else:
        counts = np.ones((members, len(train_index)))
    weights = torch.from_numpy(_row_weights(counts, w_tr)).to(dev, dtype)
    val_weights = None if w_va is None else torch.from_numpy(w_va / w_va.sum()).to(dev, dtype)

    net = _BatchedMLP((p, *hidden, 1), members, activation, generator, dtype).to(dev)
    params = list(net.parameters())

    def train_losses() -> torch.Tensor:
        return _weighted_loss(net(z_tr), t_tr, weights)

    def val_losses() -> torch.Tensor:
        with torch.no_grad():
            if val_weights is None:
                return ((net(z_va) - t_va) ** 2).mean(dim=1)
            return _weighted_loss(net(z_va), t_va, val_weights)

    best = [q.detach().clone() for q in params]
    best_val = torch.full((members,), math.inf, device=dev, dtype=dtype)
    best_epoch = torch.zeros(members, dtype=torch.long, device=dev)
    stall = torch.zeros(members, dtype=torch.long, device=dev)
    train_curve, val_curve = [], []

    def keep_improved(val: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        improved = val < best_val
        best_val.copy_(torch.where(improved, val, best_val))
        for q, b in zip(params, best):
            b.copy_(torch.where(improved.view(-1, 1, 1), q.detach(), b))
        if epoch is not None:
            best_epoch.copy_(torch.where(improved, epoch, best_epoch))
        return improved

    optimizer = Adam(params, lr=lr)
    bar = tqdm(total=max_epochs, desc="fit: Adam", disable=not progress, leave=False)
    epoch = 0
    for epoch in range(max_epochs):
        optimizer.zero_grad()
        loss = train_losses()
        loss.sum().backward()
        optimizer.step()
        val = val_losses()
        train_curve.append(loss.detach())
        val_curve.append(val)
        improved = keep_improved(val, epoch)
        stall = torch.where(improved, 0, stall + 1)
        if (epoch + 1) % _CHECK_EVERY == 0:
            bar.update(_CHECK_EVERY)
            if progress:
                bar.set_postfix(val_rmse=f"{math.sqrt(float(best_val.min())) * y_scale:.3g}")
            if bool((stall >= patience).all()):
                break
        if expired(deadline):  # one clock read an epoch
            if epoch + 1 < max_epochs:
                cut.append(f"Adam stopped after {epoch + 1} of {max_epochs} epochs")
            break
    bar.close()
    with torch.no_grad():
        for q, b in zip(params, best):
            q.copy_(b)
    val_before = best_val.clone()
    _stage(f"fit: Adam, {members} members, {rows_text}, {len(train_curve)} epochs", start)

    if lbfgs_steps > 0 and expired(deadline):
        cut.append("L-BFGS polish skipped")
    elif lbfgs_steps > 0:
        polish_start = time.perf_counter()
        taken = _polish(params, train_losses, val_losses, keep_improved, lbfgs_steps, progress, deadline=deadline)
        if taken < lbfgs_steps and expired(deadline):
            cut.append(f"L-BFGS polish stopped after {taken} of {lbfgs_steps} steps")
        with torch.no_grad():
            for q, b in zip(params, best):
                q.copy_(b)
        _stage(f"fit: L-BFGS polish, {members} members, at most {lbfgs_steps} steps", polish_start)
    val_after = val_losses()

    history = []
    train_np = torch.stack(train_curve).cpu().numpy() if train_curve else np.zeros((0, members))
    val_np = torch.stack(val_curve).cpu().numpy() if val_curve else np.zeros((0, members))
    for m in range(members):
        history.append({
            "train": train_np[:, m].astype(np.float64),
            "val": val_np[:, m].astype(np.float64),
            "best_epoch": int(best_epoch[m]),
            "val_before_polish": float(val_before[m]),
            "val_after_polish": float(val_after[m]),
            "polish_kept": bool(val_after[m] < val_before[m]),
        })

    model = _export(net, activation)
    with torch.no_grad():
        z_val = torch.from_numpy((X[val_index if val_index.size else train_index] - x_mean) / x_scale)
        y_val = y[val_index if val_index.size else train_index]
        pred = y_mean + y_scale * model(z_val).numpy()
    if w_va is None:
        val_rmse = np.sqrt(((pred - y_val[:, None]) ** 2).mean(axis=0))
    else:
        val_rmse = np.sqrt(np.average((pred - y_val[:, None]) ** 2, axis=0, weights=w_va))
    _stage(f"fit: {members} members, {len(train_index) + len(val_index)} of {n} rows", start)
    if cut:
        _log.info("fit: time budget spent: %s", ", ".join(cut))
    return FittedEnsemble(
        model=model,
        x_mean=x_mean,
        x_scale=x_scale,
        y_mean=y_mean,
        y_scale=y_scale,
        members=members,
        val_rmse=val_rmse,
        train_index=train_index,
        val_index=val_index,
        history=history,
        activation=activation,
        hidden=hidden,
        seconds=time.perf_counter() - start,
        rows_total=n,
        cut=", ".join(cut),
    )
