"""Reading and writing trained networks: a safe weights-only format, TorchScript, and (on request) pickles.

``discovery`` writes its own networks (``model.pt`` in a result folder) as a dictionary of plain
values and tensors: the layer list, the ``state_dict``, the input names, the variable space and
the training range of every input. ``torch.load(path, weights_only=True)`` reads it without
running code from the file. A whole pickled module is read only when the caller says it trusts
the file, because unpickling runs code the file names.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from discovery.errors import ModelLoadError

__all__ = ["load_model", "read_model", "save_model", "SavedModel"]

_HOW_TO_SAVE = ("save a TorchScript archive with torch.jit.save(torch.jit.script(model), path), or the whole "
                "module with torch.save(model, path) and load it trusting the file")
_FORMAT = "discovery-model"
_VERSION = 1


@dataclass
class SavedModel:
    """A network read from a file and what the file says about its inputs.

    Attributes
    ----------
    module : torch.nn.Module
        The network in ``eval()`` mode.
    names : list of str or None
        Input names (None when the file does not say).
    space : {"raw", "log"} or None
        ``"log"``: the inputs are ``log x`` and the output is ``log |y|``.
    input_min, input_max : (p,) arrays or None
        Range of the training inputs, in the network's input space.
    target : str or None
    """

    module: nn.Module
    names: list[str] | None = None
    space: str | None = None
    input_min: np.ndarray | None = None
    input_max: np.ndarray | None = None
    target: str | None = None


def save_model(module: nn.Module, path, *, names: Sequence[str], space: str = "raw", input_min=None,
               input_max=None, target: str | None = None) -> Path:
    """Write an ``nn.Sequential`` of ``Linear`` layers and known activations in the weights-only format.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> path = save_model(net, os.path.join(tempfile.mkdtemp(), "net.pt"), names=["a", "b"])
    >>> read_model(path).names
    ['a', 'b']
    """
    call = f"save_model(module, {str(path)!r})"
    if not isinstance(module, nn.Sequential):
        raise ModelLoadError(f"{call}: the module is a {type(module).__name__}; pass an nn.Sequential")
    layers = []
    for i, layer in enumerate(module):
        spec = _layer_spec(layer)
        if spec is None:
            raise ModelLoadError(f"{call}: layer {i} ({type(layer).__name__}) has no weights-only form; supported: "
                                 f"Linear, Sine, {', '.join(sorted(_ARGLESS))}, {', '.join(sorted(_SCALARS))}")
        layers.append(spec)
    state = {
        "format": _FORMAT, "version": _VERSION, "layers": layers,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "names": [str(n) for n in names], "space": str(space), "target": None if target is None else str(target),
        "input_min": None if input_min is None else [float(v) for v in np.asarray(input_min).reshape(-1)],
        "input_max": None if input_max is None else [float(v) for v in np.asarray(input_max).reshape(-1)],
    }
    from discovery.folders import atomic_write

    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def _layer_spec(layer: nn.Module) -> list | None:
    from discovery.nn import Sine

    if isinstance(layer, nn.Linear):
        return ["Linear", layer.in_features, layer.out_features, layer.bias is not None, str(layer.weight.dtype)]
    if isinstance(layer, Sine):
        return ["Sine", float(layer.w0)]
    name = type(layer).__name__
    if name in _ARGLESS and type(layer) is _ARGLESS[name]:
        return [name]
    if name in _SCALARS and type(layer) is getattr(nn, name):
        return [name, *[float(getattr(layer, k)) for k in _SCALARS[name]]]
    return None


def _build(state: dict, call: str) -> nn.Sequential:
    from discovery.nn import Sine

    layers: list[nn.Module] = []
    try:
        for spec in state["layers"]:
            kind, args = spec[0], spec[1:]
            if kind == "Linear":
                dtype = getattr(torch, str(args[3]).removeprefix("torch."))
                layers.append(nn.Linear(int(args[0]), int(args[1]), bias=bool(args[2]), dtype=dtype))
            elif kind == "Sine":
                layers.append(Sine(float(args[0])))
            elif kind in _ARGLESS:
                layers.append(_ARGLESS[kind]())
            elif kind in _SCALARS:
                layers.append(getattr(nn, kind)(**dict(zip(_SCALARS[kind], map(float, args)))))
            else:
                raise ModelLoadError(f"{call}: unknown layer {kind!r} in the file; it was written by a newer "
                                     "version of discovery")
        model = nn.Sequential(*layers)
        model.load_state_dict(state["state_dict"])
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, ValueError) as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"{call}: the discovery model file is damaged ({_first_line(exc)})") from exc
    model.requires_grad_(False)
    return model.eval()


def load_model(path, *, map_location="cpu", trust_pickle: bool = False) -> nn.Module:
    """Read a model file and return the network in evaluation mode.

    Three formats are understood: the weights-only format ``discovery`` writes (``model.pt`` in a
    result folder, :func:`save_model`), a TorchScript archive written by ``torch.jit.save``, and,
    only with ``trust_pickle=True``, a whole module written by ``torch.save(model, path)`` (its
    class must be importable). A file that holds only a ``state_dict`` carries no architecture and
    is refused with a message saying how to rebuild the module.

    Parameters
    ----------
    path : str or path-like
        The model file.
    map_location : str or torch.device
        Where tensors are placed (default CPU).
    trust_pickle : bool, default False
        Read a whole pickled module. Unpickling runs code named in the file: pass True only for
        files you trust.

    Returns
    -------
    torch.nn.Module
        The network, in ``eval()`` mode. A TorchScript ``Sequential`` of standard layers
        (``Linear``, smooth activations, ``Sine``) is rebuilt as an ordinary ``nn.Sequential`` with
        the same weights, so the Taylor engine can trace it; other TorchScript models are
        returned as ``torch.jit.ScriptModule``.

    Raises
    ------
    ModelLoadError
        The file is missing, a directory, empty, not a torch file, a pickle while
        ``trust_pickle`` is False, a ``state_dict`` or checkpoint dictionary, or holds an object that
        is not a module.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
    >>> torch.jit.save(torch.jit.script(net), path)
    >>> load_model(path)[0].in_features
    2
    """
    return read_model(path, map_location=map_location, trust_pickle=trust_pickle).module


def read_model(path, *, map_location="cpu", trust_pickle: bool = False, call: str | None = None,
               trust_flag: str = "trust_pickle=True") -> SavedModel:
    """Like :func:`load_model`, also returning the input names, space and training range the file records.

    ``call`` starts error messages and ``trust_flag`` is how they name the option that reads a
    pickle (the command line passes ``--trust-pickle``).
    """
    call = call or f"load_model({str(path)!r})"
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{call}: no such file; pass the path of a model file ({_HOW_TO_SAVE})")
    if p.is_dir():
        raise ModelLoadError(f"{call}: is a directory; pass the model file inside it")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"{call}: the file is empty; {_HOW_TO_SAVE}")
    if _is_torchscript(p):
        try:
            model = torch.jit.load(str(p), map_location=map_location)
        except Exception as exc:  # torch raises RuntimeError subclasses with long C++ traces
            raise ModelLoadError(f"{call}: looks like a TorchScript archive but could not be read "
                                 f"({_first_line(exc)}); re-export it with torch.jit.save") from exc
        return SavedModel(_rebuild(model).eval())
    obj = _load_weights_only(p, map_location, call, trust_pickle, trust_flag)
    if isinstance(obj, Mapping) and obj.get("format") == _FORMAT:
        if obj.get("version") != _VERSION:
            raise ModelLoadError(f"{call}: model format version {obj.get('version')!r}; this discovery reads "
                                 f"version {_VERSION}")
        model = _build(obj, call).to(map_location)
        lo, hi = obj.get("input_min"), obj.get("input_max")
        return SavedModel(model, names=list(obj.get("names") or []) or None, space=obj.get("space"),
                          input_min=None if lo is None else np.asarray(lo, dtype=np.float64),
                          input_max=None if hi is None else np.asarray(hi, dtype=np.float64),
                          target=obj.get("target"))
    if isinstance(obj, nn.Module):
        return SavedModel(obj.eval())
    raise ModelLoadError(_not_a_module(obj, call))


def _load_weights_only(p: Path, map_location, call: str, trust_pickle: bool, trust_flag: str):
    try:
        return torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _is_pickle(p):
            raise ModelLoadError(f"{call}: not a PyTorch model file (neither a torch archive nor a pickle); "
                                 f"{_HOW_TO_SAVE}") from None
        if not trust_pickle:
            raise ModelLoadError(
                f"{call}: the file is a full pickle (a whole module or other Python objects), and loading it "
                f"runs code named in the file; pass {trust_flag} only if you trust where the file came from, "
                "or re-save the network as TorchScript with torch.jit.save(torch.jit.script(model), path)") from None
    except (EOFError, RuntimeError, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{call}: not a PyTorch model file ({_first_line(exc)}); {_HOW_TO_SAVE}") from exc
    return _unpickle(p, map_location, call)


def _is_pickle(p: Path) -> bool:
    """A torch archive (zip) or a pickle stream (protocol 2 and later start with the PROTO opcode)."""
    with open(p, "rb") as handle:
        return zipfile.is_zipfile(p) or handle.read(1) == b"\x80"


def _is_torchscript(p: Path) -> bool:
    if not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


_ARGLESS = {name: getattr(nn, name) for name in
            ("Tanh", "Sigmoid", "ReLU", "SiLU", "GELU", "Identity", "Softsign", "Tanhshrink", "Mish")}
_SCALARS = {"Softplus": ("beta", "threshold"), "LeakyReLU": ("negative_slope",), "ELU": ("alpha",),
            "CELU": ("alpha",)}


def _rebuild(script: nn.Module) -> nn.Module:
    """An ``nn.Sequential`` equal to a scripted one, or the scripted module when unknown layers occur."""
    if getattr(script, "original_name", None) != "Sequential":
        return script
    layers = []
    for _, child in script.named_children():
        layer = _rebuild_layer(child)
        if layer is None:
            return script
        layers.append(layer)
    return nn.Sequential(*layers)


def _rebuild_layer(child) -> nn.Module | None:
    from discovery.nn import Sine

    name = getattr(child, "original_name", None)
    if name == "Linear":
        weight = child.weight.detach()
        bias = getattr(child, "bias", None)
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                          dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias.detach())
        return layer
    if name in _ARGLESS:
        return _ARGLESS[name]()
    if name in _SCALARS:
        return getattr(nn, name)(**{k: float(getattr(child, k)) for k in _SCALARS[name]})
    if name == "Sine":
        return Sine(float(child.w0))
    if name == "Sequential":
        rebuilt = _rebuild(child)
        return rebuilt if isinstance(rebuilt, nn.Sequential) else None
    return None


def _unpickle(p: Path, map_location, call: str):
    try:
        return torch.load(str(p), map_location=map_location, weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise ModelLoadError(f"{call}: the file holds a pickled module whose class cannot be imported "
                             f"({_first_line(exc)}); import the module that defines the class before "
                             "loading, or save the model as TorchScript with "
                             "torch.jit.save(torch.jit.script(model), path)") from exc
    except (pickle.UnpicklingError, EOFError, RuntimeError, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{call}: not a PyTorch model file ({_first_line(exc)}); {_HOW_TO_SAVE}") from exc


def _looks_like_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _not_a_module(obj, call: str) -> str:
    if _looks_like_state_dict(obj):
        keys = ", ".join(list(obj)[:3])
        return (f"{call}: the file holds a state_dict (parameter tensors {keys}, ...) but no architecture; "
                "rebuild the module in Python and call module.load_state_dict(torch.load(path)), "
                f"then pass the module itself, or {_HOW_TO_SAVE}")
    if isinstance(obj, Mapping):
        for key in ("model", "net", "module"):
            if isinstance(obj.get(key), nn.Module):
                return (f"{call}: the file is a checkpoint dictionary with the module under key {key!r}; "
                        f"load it with torch.load(path, weights_only=False)[{key!r}] and pass that module, "
                        f"or {_HOW_TO_SAVE}")
        nested = [k for k, v in obj.items() if _looks_like_state_dict(v)]
        if nested:
            return (f"{call}: the file is a checkpoint dictionary whose {nested[0]!r} entry is a state_dict "
                    "with no architecture; rebuild the module, call "
                    f"module.load_state_dict(checkpoint[{nested[0]!r}]) and pass the module, or {_HOW_TO_SAVE}")
        return (f"{call}: the file holds a dict with keys {list(obj)[:5]} rather than a model; {_HOW_TO_SAVE}")
    return f"{call}: the file holds a {type(obj).__name__}, not a torch.nn.Module; {_HOW_TO_SAVE}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
