"""Trace a model with torch.fx and run its graph on Taylor series, one rule per node.

Each node's form (module class, function, method name) is resolved to its primitive's rule
once per traced graph, in the graph's run plan; running the graph only calls the rules.
"""

from __future__ import annotations

import weakref

import torch
from torch import fx, nn

import discovery.engine.rules  # noqa: F401  (registers the built-in rules)
from discovery.engine.registry import (
    REGISTRY,
    Context,
    form_name,
    resolve,
    resolve_module,
    supported_names,
    version,
)
from discovery.engine.series import Series
from discovery.errors import ExpansionError, UnsupportedLayerError

__all__ = ["trace", "run_graph"]


class _Tracer(fx.Tracer):
    """Keeps every module with a registered rule as one node (e.g. ``Sine``)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if resolve_module(type(m)) is not None:
            return True
        return super().is_leaf_module(m, qualname)


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
# Run plans of the graphs traced here (private to the cache, so never edited afterwards).
_PLANS: "weakref.WeakKeyDictionary[fx.GraphModule, tuple]" = weakref.WeakKeyDictionary()
_PLAIN = (bool, int, float, str, type(None))


def _fingerprint(model: nn.Module) -> tuple:
    """What a traced graph depends on besides tensor values: the module tree (which module
    object sits where), each module's class and ``forward``, and its plain attributes (fx
    bakes numbers such as ``w0`` into the graph). Parameters and buffers are read at run
    time, so training in place keeps a cached graph valid."""
    parts = []
    stack = [("", model)]
    while stack:
        name, m = stack.pop()
        attrs = vars(m)
        plain = tuple(sorted((k, v) for k, v in attrs.items() if isinstance(v, _PLAIN)))
        forward = m.forward
        parts.append((name, id(m), type(m), getattr(forward, "__func__", forward), plain))
        children = attrs.get("_modules")
        if children:
            for key, child in reversed(children.items()):
                if child is not None:
                    stack.append((f"{name}.{key}" if name else key, child))
    return tuple(parts)


def trace(model: nn.Module, call: str) -> fx.GraphModule:
    """Symbolically trace ``model``; a model that cannot be traced gets a clear error.

    The graph is cached per model and reused while the model's structure and the registry
    are unchanged, so repeated expansions of one network (many reference points in chunks,
    a convergence table) trace it and resolve its rules once.
    """
    if isinstance(model, fx.GraphModule):
        return model
    # Which modules are leaves, and which rule each node runs, depend on the registry too.
    key = (version(), _fingerprint(model))
    try:
        hit = _CACHE.get(model)
    except TypeError:  # a module class that defines __eq__ without __hash__: no caching
        return _trace(model, call)
    if hit is not None and hit[0] == key:
        return hit[1]
    gm = _trace(model, call)
    _CACHE[model] = (key, gm)
    _PLANS[gm] = _plan(gm)
    return gm


def _trace(model: nn.Module, call: str) -> fx.GraphModule:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # torch.fx raises many kinds of errors on untraceable code
        raise ExpansionError(
            f"{call}: the model could not be traced with torch.fx ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); its forward must not branch on tensor "
            "values. Move data-dependent control flow out of forward, or wrap that part in a "
            "module and register a Taylor rule for it with discovery.engine.register_rule('name', ModuleClass)(rule)"
        ) from exc
    return fx.GraphModule(model, graph)


def _describe(node: fx.Node, gm: fx.GraphModule) -> tuple[str, object]:
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        return f"module '{node.target}' ({type(module).__name__})", module
    if node.op == "call_method":
        return f"method .{node.target}() at node '{node.name}'", node.target
    name = getattr(node.target, "__name__", repr(node.target))
    return f"function {name}() at node '{node.name}'", node.target


def _resolve(node: fx.Node, target) -> tuple:
    """``(rule, adapt, key)`` of a call node; ``rule`` is None when its form has no alias."""
    if node.op == "call_module":
        key = type(target)
        alias = resolve_module(key)
    else:
        key = target
        alias = resolve(key)
    if alias is None:
        return None, None, key
    return REGISTRY[alias.primitive], alias.adapt, key


def _has_series(values) -> bool:
    found = False

    def visit(v):
        nonlocal found
        found = found or isinstance(v, Series)
        return v

    fx.node.map_aggregate(values, visit)
    return found


_NESTED = (tuple, list, dict, slice)


def _plan(gm: fx.GraphModule) -> tuple:
    """What running the graph needs besides values, worked out once per graph.

    One step per node: the node, its description and call target (the module object for
    modules), whether its arguments are flat (no nested containers, so they load without
    fx's generic mapping), the values to free after it (their last use), and its resolved
    rule, argument adapter and registry key.
    """
    nodes = list(gm.graph.nodes)
    last_use: dict = {}
    for i, node in enumerate(nodes):
        for inp in node.all_input_nodes:
            last_use[inp] = i
    steps = []
    for i, node in enumerate(nodes):
        free = tuple(inp for inp in node.all_input_nodes if last_use.get(inp) == i)
        call = node.op.startswith("call_")
        where, target = _describe(node, gm) if call else (None, node.target)
        resolved = _resolve(node, target) if call else (None, None, None)
        flat = not node.kwargs and not any(isinstance(a, _NESTED) for a in node.args)
        steps.append((node, where, target, flat, free, resolved))
    placeholders = [n for n in nodes if n.op == "placeholder"]
    return version(), steps, placeholders


def run_graph(gm: fx.GraphModule, x: Series, ctx: Context, call: str):
    """Evaluate the traced graph with ``x`` as its single input."""
    plan = _PLANS.get(gm)
    if plan is None or plan[0] != version():
        plan = _plan(gm)
        if gm in _PLANS:
            _PLANS[gm] = plan
    _, steps, placeholders = plan
    if not placeholders:
        raise ExpansionError(f"{call}: the model's forward takes no input")
    first = placeholders[0]
    env: dict = {}
    for node, where, target, flat, free, resolved in steps:
        op = node.op
        if op == "placeholder":
            env[node] = x if node is first else (node.args[0] if node.args else None)
        elif op == "get_attr":
            env[node] = ctx.tensor(_fetch_attr(gm, node.target))
        elif op == "output":
            return fx.node.map_arg(node.args[0], lambda n: env[n])
        else:
            env[node] = _run_node(node, where, target, flat, resolved, env, ctx, call)
        for inp in free:
            env.pop(inp, None)
    raise ExpansionError(f"{call}: the traced graph has no output")


def _fetch_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _run_node(node, where, target, flat, resolved, env, ctx, call):
    if flat:
        args = tuple(env[a] if isinstance(a, fx.Node) else a for a in node.args)
        kwargs = {}
        has_series = any(isinstance(a, Series) for a in args)
    else:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        has_series = _has_series((args, kwargs))
    if not has_series:
        # Constant sub-expression (shapes, masks, parameters): evaluate it as the model would.
        if node.op == "call_module":
            return target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        return target(*args, **kwargs)
    rule, adapt, key = resolved
    if rule is None:
        form = repr(key) if isinstance(key, str) else form_name(key)  # as it is written in code
        raise UnsupportedLayerError(
            f"{call}: no Taylor rule for {where}. Supported primitives: {', '.join(supported_names())} "
            "(discovery.engine.forms_of(name) lists the modules, functions and methods of each). "
            f"Register a rule for it with discovery.engine.register_rule('name', {form})(rule), or map "
            f"it to an existing primitive with discovery.engine.register_alias({form}, 'name', adapt)"
        )
    ctx.where = f"{call}: {where}"
    try:
        if node.op == "call_module":
            args = (target, *args)
        if adapt is not None:
            args, kwargs = adapt(*args, **kwargs)
        return rule(ctx, *args, **kwargs)
    except (ExpansionError, UnsupportedLayerError):
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ExpansionError(f"{call}: {where} failed: {exc}") from exc
