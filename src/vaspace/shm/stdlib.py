"""The standard library's ``ShareableList`` and shared-memory manager, re-bound.

These classes are plain Python over ``SharedMemory``; they name it through
their module's globals.  Instead of re-implementing them, their functions
are re-created with the same code over a copy of those globals in which
``SharedMemory`` (and the ``shared_memory`` module) are vaspace's.  So they
behave exactly as the installed Python's do, over vaspace segments.
"""

from __future__ import annotations

import types
from typing import Any


def _rebind_value(value: Any, namespace: dict[str, Any]) -> Any:
    if isinstance(value, types.FunctionType):
        fn = types.FunctionType(value.__code__, namespace, value.__name__, value.__defaults__,
                                value.__closure__)
        fn.__kwdefaults__ = value.__kwdefaults__
        fn.__doc__ = value.__doc__
        fn.__qualname__ = value.__qualname__
        return fn
    if isinstance(value, (classmethod, staticmethod)):
        return type(value)(_rebind_value(value.__func__, namespace))
    if isinstance(value, property):
        return property(*(_rebind_value(f, namespace) if f else None
                          for f in (value.fget, value.fset, value.fdel)), value.__doc__)
    return value


def rebind(cls: type, namespace: dict[str, Any], module: str,
           bases: tuple[type, ...] | None = None, **overrides: Any) -> type:
    """A copy of ``cls`` whose methods resolve globals in ``namespace``.

    The copy is named as ``cls`` but lives in ``module`` (so pickle finds it
    there); ``overrides`` replace class attributes.
    """
    body = {k: _rebind_value(v, namespace) for k, v in vars(cls).items()
            if k not in ("__dict__", "__weakref__")}
    body.update(overrides)
    body["__module__"] = module
    new = type(cls.__name__, bases if bases is not None else cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new
