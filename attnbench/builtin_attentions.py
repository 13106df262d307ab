"""The built-in attentions: every class in a module of ``soft`` or ``baselines`` that carries ``variants`` metadata.

Adding a mechanism is one module, e.g. ``baselines/foo.py`` with a class that describes itself (see
:mod:`attnbench.registry`): it is found here, registered, listed, swept and tested with no other edit. The sweep
defaults live on the classes too (SOFT keeps a fixed m = 49 pooled landmarks where N varies, so its cost is linear
in N; the paper's stride-s conv sampler is ``--hparam soft.sampler=conv``).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Iterator

import baselines  # noqa: F401  (imported here so that a broken package fails on import of this module)
import soft  # noqa: F401

__all__ = ["BUILTIN_PACKAGES", "builtin_classes"]

BUILTIN_PACKAGES = ("soft", "baselines")


def builtin_classes() -> Iterator[type]:
    """The classes with their own ``variants``, package by package, module by module (sorted), in definition order.

    A class is taken from the module that defines it, so a re-export (``baselines/__init__.py``) is not seen twice.
    """
    for pkg_name in BUILTIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{pkg_name}."):
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if inspect.isclass(obj) and obj.__module__ == module.__name__ and "variants" in obj.__dict__:
                    yield obj
