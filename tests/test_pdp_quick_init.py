"""pdp.plumbing.frozen.quick_init: the PDP's per-decision values made with one __dict__
set are the dataclasses they were: equal to what the dataclass's own __init__ makes,
with the same repr, hash and defaults, still frozen, still dataclasses.replace-able; and
what it cannot make the same is refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pdp.domain.decisions import Decision, Guarded, Reusable, _Evaluated
from pdp.engine import EngineResult
from pdp.plumbing.frozen import quick_init
from pdp.store import BatchResult, _Pending
from pdp.store.chain import AuditRecord, Draft
from portcullis.verdict import Verdict


def _plain(cls: type) -> type:
    """The same fields as a plain frozen dataclass (its own __init__)."""
    return dataclasses.make_dataclass(
        cls.__name__,
        [
            (f.name, f.type, f.default)
            if f.default is not dataclasses.MISSING
            else (f.name, f.type)
            for f in dataclasses.fields(cls)
        ],
        frozen=True,
    )


ALLOW = Verdict.deny("held for the test")
SAMPLES: list[tuple[type, tuple[Any, ...]]] = [
    (AuditRecord, (3, "d-1", "decision", 1.5, "s-1", "alice", {"a": 1}, "0" * 64, "f" * 64)),
    (Draft, ("d-1", "decision", 1_500_000, "s-1", "alice", {"a": 1}, '{"a":1}')),
    (_Pending, (None, True, None)),
    (BatchResult, ([], set())),
    (Reusable, ("s-1", "postgres.query", "select 1", "k")),
    (_Evaluated, (ALLOW, "d-1", {"verdict": "allow"}, {})),
    (Decision, ("d-1", ALLOW, "rev", 1.25, True)),
    (Decision, ("d-1", ALLOW, "rev", 1.25, True, "select 2", (1, 2), None)),
    (Guarded, (ALLOW,)),
    (EngineResult, ({"verdict": "allow"}, "rev", 0.5)),
]


@pytest.mark.parametrize(("cls", "args"), SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_made_as_the_dataclass_makes_it(cls, args):
    made = cls(*args)
    plain = _plain(cls)(*args)
    assert dataclasses.astuple(made) == dataclasses.astuple(plain)
    assert list(vars(made)) == [f.name for f in dataclasses.fields(cls)]
    assert repr(made).partition("(")[2] == repr(plain).partition("(")[2]
    assert made == cls(*args)
    if _hashable(args):
        assert hash(made) == hash(cls(*args))
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, name, None)
    again = dataclasses.replace(made)
    assert again == made and again is not made


def _hashable(args: tuple[Any, ...]) -> bool:
    try:
        hash(args)
    except TypeError:
        return False
    return True


def test_keywords_and_defaults_as_declared():
    by_name = Decision(
        id="d-1", verdict=ALLOW, policy_revision="r", evaluation_ms=0.0, recorded=True
    )
    assert by_name.rewritten == "" and by_name.egress_left is None and by_name.shape is None
    with pytest.raises(TypeError):
        Decision("d-1", ALLOW)  # fields without defaults are required
    with pytest.raises(TypeError):
        Reusable("s", "k", "r", "key", "one too many")


def test_what_it_cannot_make_the_same_is_refused():
    @dataclasses.dataclass
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class Factory:
        a: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class After:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    for cls in (Mutable, Factory, After, Slotted, int):
        with pytest.raises(TypeError):
            quick_init(cls)
