"""`quick_init`: a frozen dataclass whose instances are made at a third of the cost.

Owns the one way the PDP's per-decision values (a decision, its record's draft and sealed
record, an evaluation's result) are built cheaply: a frozen dataclass's own __init__
sets each field through object.__setattr__ (callgrind: ~12.7k instructions for seven
fields); this one gives the instance its whole __dict__ in one call (~6.4k). The class
stays the dataclass it was: the same fields, defaults, repr, equality, hash, frozenness
and dataclasses.replace. No IO here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def quick_init(cls: C) -> C:
    """Replace a frozen dataclass's __init__ by one that sets the instance's __dict__
    whole. Refused (TypeError) for what it would not do the same: a class that is not a
    frozen dataclass, has __slots__ or __post_init__, or a field that is keyword-only,
    left out of __init__ or made by a factory."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __slots__ or __post_init__")
    fields = dataclasses.fields(cls)
    for field in fields:
        if field.kw_only or not field.init or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name} is not a plain positional field")
    names = [field.name for field in fields]
    scope: dict[str, Any] = {"_set": object.__setattr__}
    signature = []
    for field in fields:
        if field.default is dataclasses.MISSING:
            signature.append(field.name)
        else:
            scope[f"_default_{field.name}"] = field.default
            signature.append(f"{field.name}=_default_{field.name}")
    members = ", ".join(f"{name!r}: {name}" for name in names)
    source = (
        f"def __init__(self, {', '.join(signature)}):\n    _set(self, '__dict__', {{{members}}})\n"
    )
    # what dataclasses itself does to make an __init__; the text holds field names alone
    exec(source, scope)  # noqa: S102
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
    return cls
