"""Loading a trained network from a file: a whole pickled module or a TorchScript archive."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from discovery.errors import ModelLoadError

__all__ = ["load_model"]

_HOW_TO_SAVE = ("save the whole module with torch.save(model, path) or a TorchScript archive with "
                "torch.jit.save(torch.jit.script(model), path)")


def load_model(path, *, map_location="cpu") -> nn.Module:
    """Read a model file and return the network in evaluation mode.

    Two formats are understood: a whole module written by ``torch.save(model, path)`` (its class
    must be importable when loading, as for any pickle) and a TorchScript archive written by
    ``torch.jit.save``. A file that holds only a ``state_dict`` carries no architecture and is
    refused with a message saying how to rebuild the module.

    Loading a pickled module runs code from the file: only load files you trust.

    Parameters
    ----------
    path : str or path-like
        The model file.
    map_location : str or torch.device
        Where tensors are placed (default CPU).

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
        The file is missing, a directory, empty, not a torch file, a ``state_dict`` or checkpoint
        dictionary, or holds an object that is not a module.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
    >>> torch.save(net, path)
    >>> load_model(path)[0].in_features
    2
    """
    call = f"load_model({str(path)!r})"
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
        return _rebuild(model).eval()
    obj = _unpickle(p, map_location, call)
    if isinstance(obj, nn.Module):
        return obj.eval()
    raise ModelLoadError(_not_a_module(obj, call))


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
