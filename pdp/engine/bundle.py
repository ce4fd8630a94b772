"""A policy bundle: the Rego modules and data of a policy directory, and its revision.

Owns reading rego/ (every `*.rego` file, `data.json` merged at the root of `data`) and
naming what was read: the git commit when the directory is a clean git checkout, else a
content hash. It evaluates nothing and imports no engine, so it is safe in any process.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The revision of the policy input this PDP builds. Rules of the shipped policy open with
# flags the PDP sets (input.command.postgres.has.<flag>, .types: pdp.domain.policy_input)
# so the evaluator skips them for a query without the fact; a policy whose rule opens with
# a flag an older PDP does not set would skip the rule there (fail open). Raised whenever
# such a flag or field is added; the policy names the revision it needs in its data
# (`portcullis.requires.input_revision`) and a PDP that builds less refuses to load it.
# 2: a statement's `index_columns` and a call's `arguments` (postgres), a part's
# `loop_variables` and a shell's settings carried to its script's parts (ssh).
# 3: the roots a client declares, `input.command.mcp.roots` (mcp.rego bounds them).
# 4: what writing to a relation runs, `input.command.postgres.write_code` (the proxy's
#    start-up facts, proxies/postgres/user_code.py; postgres_user_code.rego).
# 5: the query flags `writes` and `shadows`, input.command.postgres.has (postgres_lineage.rego's
#    stored-copy and catalog-name rules open with them).
# 6: `keyed` on a statement's predicates and outputs (postgres: a column met only through
#    a constant key or path of a document); an older PDP leaves it out, and a document
#    column's every key would be judged as the whole document (postgres_lineage.rego).
INPUT_REVISION = 6
REQUIREMENT_KEY = ("portcullis", "requires", "input_revision")


class BundleError(Exception):
    """The policy directory cannot be read as a bundle."""


def unmet_requirement(data: Any) -> str | None:
    """Why this PDP must not evaluate a policy with this data (its `input_revision` is
    newer than INPUT_REVISION, or is no whole number), or None."""
    needed: Any = data
    for key in REQUIREMENT_KEY:
        if not isinstance(needed, dict) or key not in needed:
            return None  # a policy that names no requirement relies on no flag
        needed = needed[key]
    if type(needed) is not int or needed < 0:
        return f"data.{'.'.join(REQUIREMENT_KEY)} must be a whole number, not {needed!r}"
    if needed > INPUT_REVISION:
        return (
            f"the policy needs policy input revision {needed} and this PDP builds revision "
            f"{INPUT_REVISION}: upgrade the PDP before the policy (an older PDP leaves out "
            "facts the policy's rules rely on)"
        )
    return None


@dataclass(frozen=True)
class PolicyBundle:
    modules: dict[str, str]  # path relative to the bundle root → Rego source
    data: dict[str, Any]
    revision: str
    root: str

    def without_tests(self) -> PolicyBundle:
        """The bundle a decision engine loads: `*_test.rego` files left out."""
        modules = {p: s for p, s in self.modules.items() if not p.endswith("_test.rego")}
        return PolicyBundle(modules, self.data, self.revision, self.root)

    def to_wire(self) -> dict[str, Any]:
        return {
            "modules": self.modules,
            "data": self.data,
            "revision": self.revision,
            "root": self.root,
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> PolicyBundle:
        return cls(wire["modules"], wire["data"], wire["revision"], wire["root"])


def load_bundle(root: str | Path) -> PolicyBundle:
    """Read every Rego module and data file under root."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".rego":
            modules[rel] = path.read_text()
        elif path.name == "data.json":
            try:
                loaded = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise BundleError(f"{rel}: not valid JSON: {exc}") from None
            if not isinstance(loaded, dict):
                raise BundleError(f"{rel}: must hold a JSON object")
            _merge_at(data, path.relative_to(root).parent.parts, loaded)
    if not modules:
        raise BundleError(f"{root} holds no .rego files")
    return PolicyBundle(modules, data, policy_revision(root, modules, data), str(root))


def fingerprint(root: str | Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap change detector for hot reload: names, sizes and mtimes of policy files."""
    root = Path(root)
    entries = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix == ".rego" or path.name == "data.json"):
            st = path.stat()
            entries.append((path.as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(entries)


def content_hash(modules: dict[str, str], data: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + modules[name].encode() + b"\0")
    digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + digest.hexdigest()[:16]


def policy_revision(root: Path, modules: dict[str, str], data: dict[str, Any]) -> str:
    """`git:<commit>` when root is tracked and unchanged in git, else `sha256:<hash>`.

    A dirty checkout is named by content with the commit beside it, so an auditor can
    tell the decision did not come from a committed policy.
    """
    chash = content_hash(modules, data)
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return chash
    # --ignored: a module git ignores is loaded all the same, so it makes the tree dirty
    dirty = _git(root, "status", "--porcelain", "--ignored", "--", ".")
    if dirty is None:
        return chash
    return f"git:{commit[:12]}" if not dirty else f"{chash}+git:{commit[:12]}-dirty"


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _merge_at(target: dict[str, Any], parts: tuple[str, ...], value: dict[str, Any]) -> None:
    for part in parts:
        target = target.setdefault(part, {})
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(target.get(key), dict):
            _merge_at(target[key], (), item)
        else:
            target[key] = item
