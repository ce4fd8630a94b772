"""The protocol registry: what a protocol package declares, in one place both sides read.

Owns the contract a protocol plugs in with: its name (a connection's `type`), the command
kinds its proxy asks the PDP about, its options schema (validated when the configuration
is loaded: unknown key or wrong type → a ConfigError naming it), the proxy that serves
it, and the PDP-side builder of what the policy sees of its commands. The options every
proxy has (the runtime's: PDP timeout, decision cache, recording, spool) are declared
here once; a protocol adds its own.

Protocol packages are found through the `portcullis.protocols` entry-point group of the
installed distribution (pyproject.toml), or registered directly (`register`), as a test's
toy protocol is. `serve` and `policy_input` are named as `module:attribute` and imported
only by the side that runs them, so a proxy never loads the PDP's builder, and the PDP
never loads a proxy. Neither is needed: a protocol with no `serve` is declared and not
served; one with no `policy_input` hands the policy its command attributes as sent.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ENTRY_POINTS = "portcullis.protocols"
SESSION_OPEN = "session.open"


class OptionError(ValueError):
    """An option's value is wrong; the message says how (the caller names the key)."""


@dataclass(frozen=True)
class Option:
    """One option of a connection: its kind, its default, what it is for.

    kind: bool | seconds | int | path (an existing file) | dir | a tuple of allowed words."""

    kind: str | tuple[str, ...]
    default: Any = None
    doc: str = ""

    def checked(self, value: Any, base_dir: Path) -> Any:
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise OptionError("must be true or false")
        elif kind == "seconds":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise OptionError("must be a positive number of seconds")
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError("must be a positive integer")
        elif kind in ("dir", "path"):
            what = "a directory path" if kind == "dir" else "a file path"
            if not isinstance(value, str) or not value:
                raise OptionError(f"must be {what}")
            given = Path(value)
            value = str(given if given.is_absolute() else base_dir / given)
            if kind == "path" and not Path(value).is_file():
                raise OptionError(f"{value} does not exist")
        elif isinstance(kind, tuple) and value not in kind:
            raise OptionError(f"{value!r} is not one of {', '.join(kind)}")
        return value


# what every proxy reads (proxies/runtime/session.py), whatever its protocol
RUNTIME_OPTIONS: Mapping[str, Option] = {
    "pdp_timeout_seconds": Option("seconds", 2.0, "how long a proxy waits for a decision"),
    "decision_cache": Option("bool", True, "reuse verdicts the policy declared reusable"),
    "recording": Option("bool", True, "session events to the audit store (benchmarks only)"),
    # false: shadow mode — the PDP decides and records as ever, and answers allow (DESIGN.md)
    "enforce": Option("bool", True, "shadow mode when false: decide and record, block nothing"),
    "workers": Option("int", 1, "proxy processes sharing the listen port (0: one per core)"),
    "spool_dir": Option("dir", None, "where undelivered events and closes wait (var/spool)"),
    "spool_max_bytes": Option("int", None, "how large the spool grows before sessions halt"),
    "max_statement_bytes": Option("int", None, "longer commands: denied, recorded cut"),
}

MAX_WORKERS = 64  # a Postgres cancel key carries its worker in 7 bits (proxies.runtime.workers)


def workers_of(options: Mapping[str, Any]) -> int:
    """How many proxy processes serve a connection (`workers`; 0: one per core)."""
    count = int(options.get("workers", 1))
    return count if count > 0 else max(1, os.cpu_count() or 1)


OptionsCheck = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Protocol:
    """What a protocol package declares. `command_kinds[0]` is its usual command (what a
    recorded command of this protocol is when its event names no kind)."""

    name: str
    command_kinds: tuple[str, ...]
    options: Mapping[str, Option] = field(default_factory=dict)
    # a rule across options: None, or (the option's name or "", the problem)
    check_options: OptionsCheck | None = None
    # the proxy (module:attribute, or the callable): factory(connection, config, pdp_address)
    serve: str | Callable[..., Any] | None = None
    # the PDP's builder (module:attribute, or the callable): (kind, raw, attributes) → the
    # dict the policy sees at input.command.<name>
    policy_input: str | Callable[..., Any] | None = None
    # how many bytes of a command's text its decision record keeps (None: all of it, up
    # to the PDP's limit on a command): past it, the start, the size and the SHA-256 of the
    # whole, which is decided whole (pdp.domain.decisions)
    recorded_raw: int | None = None

    def schema(self) -> dict[str, Option]:
        return {**RUNTIME_OPTIONS, **self.options}

    def validated(self, raw: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
        """The options as given, checked, with every default the schema states filled in
        (an option whose default is None is absent unless given: its user has its own).
        Raises OptionError with the option's name as its first argument."""
        schema = self.schema()
        out = {name: o.default for name, o in schema.items() if o.default is not None}
        for name in sorted(raw, key=str):
            option = schema.get(str(name))
            if option is None:
                elsewhere = any(name in other.options for other in _REGISTERED.values())
                what = f"is not an option of {self.name} connections" if elsewhere else ""
                raise OptionError(str(name), what or "unknown key")
            try:
                out[str(name)] = option.checked(raw[name], base_dir)
            except OptionError as exc:
                raise OptionError(str(name), str(exc)) from None
        if not 0 <= out.get("workers", 1) <= MAX_WORKERS:
            raise OptionError("workers", f"must be 0 (one per core) to {MAX_WORKERS}")
        broken = self.check_options(out) if self.check_options else None
        if broken is not None:
            raise OptionError(*broken)
        return out

    def server(self) -> Callable[..., Any] | None:
        return _resolved(self.serve)

    def input_builder(self) -> Callable[..., Any] | None:
        return _resolved(self.policy_input)


_REGISTERED: dict[str, Protocol] = {}


def register(protocol: Protocol) -> None:
    """Add (or replace) a protocol; its command kinds may not be another protocol's."""
    for other in _REGISTERED.values():
        if other.name != protocol.name and set(other.command_kinds) & set(protocol.command_kinds):
            raise ValueError(f"{protocol.name}: command kinds already {other.name}'s")
    _REGISTERED[protocol.name] = protocol
    _by_kind.cache_clear()


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)
    _by_kind.cache_clear()


@functools.cache
def _entry_points_loaded() -> bool:
    for entry in entry_points(group=ENTRY_POINTS):
        protocol = entry.load()
        if not isinstance(protocol, Protocol):
            raise TypeError(f"entry point {entry.name} ({entry.value}) is not a Protocol")
        _REGISTERED.setdefault(protocol.name, protocol)
    _by_kind.cache_clear()
    return True


def registered() -> dict[str, Protocol]:
    """Every protocol this installation knows, by name."""
    _entry_points_loaded()
    return dict(sorted(_REGISTERED.items()))


def protocol(name: str) -> Protocol | None:
    _entry_points_loaded()
    return _REGISTERED.get(name)


@functools.cache
def _by_kind() -> dict[str, Protocol]:
    return {kind: known for known in registered().values() for kind in known.command_kinds}


def recorded_raw_of(kind: str) -> int | None:
    """Protocol.recorded_raw of the protocol a command kind is of (None: not bounded)."""
    known = protocol_of(kind)
    return None if known is None else known.recorded_raw


def protocol_of(kind: str) -> Protocol | None:
    """The protocol whose command kind this is (None for session.open and unknown kinds):
    one lookup per decision, the map made once per change of the registry."""
    return _by_kind().get(kind)


_RESOLVED: dict[str, Any] = {}


def _resolved(target: str | Callable[..., Any] | None) -> Callable[..., Any] | None:
    if target is None or callable(target):
        return target
    if target not in _RESOLVED:
        module, _, attribute = target.partition(":")
        _RESOLVED[target] = getattr(importlib.import_module(module), attribute)
    resolved: Callable[..., Any] = _RESOLVED[target]
    return resolved
