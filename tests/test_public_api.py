"""The public names of ``discovery`` and what importing it costs."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import types

import discovery


def test_every_public_name_resolves_to_an_object_not_a_module():
    for name in discovery.__all__:
        value = getattr(discovery, name)
        assert not isinstance(value, types.ModuleType), name


def test_no_public_name_equals_a_submodule_name():
    # Importing a submodule binds its name on the package, which would shadow a public
    # function of the same name.
    submodules = {m.name for m in pkgutil.iter_modules(discovery.__path__)}
    assert not submodules & set(discovery.__all__)


def test_unknown_attribute_raises_attribute_error():
    try:
        discovery.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_loads_no_optional_or_heavy_engine():
    code = ("import sys, discovery\n"
            "heavy = [m for m in ('pysr', 'juliacall', 'pyoperon', 'gplearn', 'sklearn', 'matplotlib') "
            "if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_calls_are_the_implementations():
    from discovery.engine import expand
    from discovery.pipeline import discover
    from discovery.validation import validate

    assert discovery.expand is expand
    assert discovery.discover is discover
    assert discovery.validate is validate
