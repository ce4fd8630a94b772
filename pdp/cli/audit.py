"""`portcullis audit verify | export`: argument parsing and exit codes for audit evidence.

Exit codes: 0 the evidence verifies (or the export was written), 1 the evidence is bad
(the first bad record is named), 2 the command cannot run (configuration, key, files).
The work itself lives in `checkpoints` (live store) and `bundle` (export, offline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, cast

EXIT_BAD = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit", help="verify the audit chain; export evidence; acknowledge records; rotate the key"
    )
    asub = audit.add_subparsers(dest="audit_command", required=True)
    verify = asub.add_parser("verify", help="check the chain and every signature")
    verify.add_argument("--bundle", default=None, help="verify an exported bundle offline")
    verify.add_argument(
        "--public-key",
        default=None,
        help="PEM of the PDP public key to pin (default: from the signing key;"
        " with --bundle: the bundled key)",
    )
    verify.add_argument(
        "--anchor",
        default=None,
        help="a head kept elsewhere: chain_head.json of an earlier export, or the newest"
        " record a SIEM received from forwarding, as its JSON (catches records cut from"
        " the store's end since); checked besides the PDP's checkpoint.json (the default)",
    )
    verify.add_argument(
        "--proxy-key",
        default=None,
        help="the PDP's proxy key, to check that every record was written by a PDP holding"
        " it (record MACs; default: pdp.proxy_key of the configuration, when readable)",
    )
    verify.set_defaults(func=cmd_audit_verify)
    ack = asub.add_parser(
        "acknowledge",
        help="record that records no PDP holding the key wrote were seen, so checkpoints"
        " go on (run where the PDP's proxy key is readable)",
    )
    ack.add_argument(
        "--through",
        type=int,
        required=True,
        help="the highest seq reviewed: foreign records up to it are acknowledged",
    )
    ack.add_argument("--reason", required=True, help="why (an incident or ticket reference)")
    ack.set_defaults(func=cmd_audit_acknowledge)
    rotate = asub.add_parser(
        "rotate-key",
        help="replace the PDP's signing key: the old key signs the hand-over in the chain,"
        " so what it signed still verifies (stop the PDP first, restart it after)",
    )
    rotate.add_argument("--reason", required=True, help="why (schedule, incident, ticket)")
    rotate.add_argument(
        "--old-key-lost",
        action="store_true",
        help="the signing key's private key is gone: the new key alone signs the hand-over,"
        " and verify says so (give --old-public-key; run before the PDP starts again)",
    )
    rotate.add_argument(
        "--old-public-key", default=None, help="PEM of the lost key (with --old-key-lost)"
    )
    rotate.set_defaults(func=cmd_audit_rotate_key)
    export = asub.add_parser("export", help="write an evidence bundle (tar.gz)")
    export.add_argument("--since", default=None, help="RFC 3339 or unix seconds (inclusive)")
    export.add_argument("--until", default=None, help="RFC 3339 or unix seconds (exclusive)")
    export.add_argument("--out", required=True, help="output file, e.g. evidence.tar.gz")
    export.add_argument(
        "--withhold-values",
        action="store_true",
        help="for an auditor outside pii-readers: the bodies of records that quote a client's"
        " values (decisions, recordings, approvals) are withheld; the rest verifies as ever",
    )
    export.set_defaults(func=cmd_audit_export)


def _fail(message: str) -> int:
    print(f"portcullis audit: {message}", file=sys.stderr)
    return EXIT_USAGE


def _anchor(path: Path) -> tuple[Any, str]:
    """The signed checkpoint kept in the anchor file (None when there is none), or why it
    cannot be read."""
    if not path.exists():
        return None, ""
    try:
        return json.loads(path.read_text()), ""
    except (OSError, ValueError) as exc:
        return None, f"anchor {path}: {exc}"


def _record_key(path: Path, given: bool) -> tuple[bytes | None, str]:
    """The record MAC key derived from the proxy key at path (pdp.store.macs), or None and
    why not; an error (a non-empty reason with given) when a key given cannot be read."""
    from pdp.api.proxy_auth import ProxyKey
    from pdp.store.macs import KEY_PURPOSE

    try:
        secret = bytes.fromhex(path.read_text().strip())
        return ProxyKey(secret).derive(KEY_PURPOSE), ""
    except (OSError, ValueError) as exc:
        reason = f"proxy key {path}: {type(exc).__name__}"
        if not given:
            print(
                f"note: record MACs not checked ({reason}): run where the PDP's proxy key"
                " is readable, or give --proxy-key",
                file=sys.stderr,
            )
            reason = ""
        return None, reason


def _print_problems(problems: list[Any]) -> None:
    first = problems[0]
    print(f"FAIL: {first.describe()}")
    for p in problems[1:20]:
        print(f"  also: {p.describe()}")
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more problems")


def _signing_key(config: Any, path: Path) -> Any:
    """The signing key at path (pdp.plumbing.keys: a file others may read is refused
    unless pdp.insecure_readable_key_files)."""
    from pdp.plumbing.keys import load_or_create_ed25519

    return load_or_create_ed25519(path, allow_readable=config.pdp.insecure_readable_key_files)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from pdp.evidence.signing import load_public_pem

    pinned = None
    if args.public_key:
        try:
            pinned = load_public_pem(Path(args.public_key).read_bytes())
        except (OSError, ValueError) as exc:
            return _fail(f"--public-key {args.public_key}: {exc}")
    if args.bundle:
        return _verify_bundle(Path(args.bundle), pinned)
    return asyncio.run(_verify_store(args, pinned))


def _verify_bundle(path: Path, pinned: Any) -> int:
    import tarfile

    from pdp.evidence.bundle import verify_bundle

    try:
        report = verify_bundle(path, pinned)
    except (OSError, tarfile.TarError, EOFError) as exc:
        return _fail(f"{path}: cannot read the bundle: {exc}")
    if report.ok:
        print(f"OK: {path}: {report.summary()}")
        if pinned is None:
            # the bundle brings its own key: any key's bundle verifies (one exported by
            # another PDP, or made whole by whoever handed it over), so say so
            print(
                f"  key: NOT PINNED: {report.key_id} is the key the bundle itself holds;"
                " give --public-key with the PDP's public key to know it signed this"
            )
        return 0
    _print_problems(report.problems)
    return EXIT_BAD


async def _verify_store(args: argparse.Namespace, pinned: Any) -> int:
    from pdp.cli import _config
    from pdp.evidence.checkpoints import anchor_path_for, head_path_for, verify_store
    from pdp.store import AuditStore, StoreUnavailable, open_store

    config = _config(args)
    public_key = pinned
    if public_key is None:
        try:
            key_path = config.pdp.signing_key
            if not key_path.exists():
                return _fail(f"signing key {key_path} not found (give --public-key)")
            public_key = _signing_key(config, key_path).public_key()
        except ValueError as exc:
            return _fail(str(exc))
    own_path = anchor_path_for(config.pdp.signing_key)
    anchor_path = Path(args.anchor) if args.anchor else own_path
    anchor, unreadable = _anchor(anchor_path)
    if unreadable:
        return _fail(unreadable)
    if args.anchor and anchor is None:
        return _fail(f"anchor {anchor_path} not found")
    # an anchor given is checked besides the PDP's own, never instead: a SIEM's record or
    # an older export's head may name a seq before the newest checkpoint
    also: list[tuple[Any, str]] = []
    if args.anchor and own_path.exists() and own_path.resolve() != anchor_path.resolve():
        own, unreadable = _anchor(own_path)
        if unreadable:
            return _fail(unreadable)
        also.append((own, str(own_path)))
    head, unreadable = _anchor(head_path_for(own_path))  # the head as the PDP last saw it
    if unreadable:
        return _fail(unreadable)
    also.append((head, str(head_path_for(own_path))))
    settings = config.pdp.store
    if settings.type == "sqlite" and not settings.path.exists():
        return _fail(f"audit store {settings.path} does not exist")
    given = args.proxy_key is not None
    record_key, unreadable = _record_key(
        Path(args.proxy_key) if given else config.pdp.proxy_key, given
    )
    if unreadable:
        return _fail(unreadable)
    store = cast(AuditStore, open_store(settings, timeout=30.0))
    try:
        await store.start()
        report = await verify_store(
            store, public_key, anchor, str(anchor_path), record_key, also=also
        )
    except StoreUnavailable as exc:
        return _fail(str(exc))
    finally:
        await store.close()
    if report.ok:
        print(f"OK: {report.summary()}")
        if not args.anchor:
            # what a rollback of the store, the anchor and the head file together (an older
            # copy of all three restored) leaves: a chain that verifies against itself
            newest = report.counted.last_time
            age = f"; its newest record is {_age(newest)} old" if newest is not None else ""
            print(
                "  rollback: checked against the files kept beside the signing key only: an"
                " older copy of the store restored together with them verifies as well"
                f"{age}; give --anchor with the newest record a SIEM received (forwarding)"
            )
        if pinned is None:
            from pdp.evidence.signing import key_id_of

            # whoever may rewrite the store and this directory may re-sign it all with a
            # key of their own: only a key kept elsewhere tells
            print(
                f"  key: {key_id_of(public_key)}, from {config.pdp.signing_key}: NOT PINNED;"
                " give --public-key with the PDP's public key kept elsewhere"
            )
        return 0
    _print_problems(report.problems)
    return EXIT_BAD


def _age(unix_seconds: float) -> str:
    import time

    seconds = max(time.time() - unix_seconds, 0.0)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


def cmd_audit_export(args: argparse.Namespace) -> int:
    from pdp.evidence.bundle import parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        return _fail(str(exc))
    return asyncio.run(_export(args, since, until))


async def _export(args: argparse.Namespace, since: float | None, until: float | None) -> int:
    from pdp.cli import _config
    from pdp.evidence.bundle import StoreUnverified, export_bundle
    from pdp.evidence.checkpoints import anchor_path_for, head_path_for
    from pdp.evidence.signing import Signer
    from pdp.store import AuditStore, StoreUnavailable, open_store

    config = _config(args)
    if not config.pdp.signing_key.exists():
        return _fail(f"signing key {config.pdp.signing_key} not found")
    settings = config.pdp.store
    if settings.type == "sqlite" and not settings.path.exists():
        return _fail(f"audit store {settings.path} does not exist")
    signer = Signer(_signing_key(config, config.pdp.signing_key))
    anchor_path = anchor_path_for(config.pdp.signing_key)
    anchor, unreadable = _anchor(anchor_path)
    if unreadable:
        return _fail(unreadable)
    head, unreadable = _anchor(head_path_for(anchor_path))
    if unreadable:
        return _fail(unreadable)
    # the store reports records no holder of the proxy key wrote (pdp.store.macs)
    record_key, _ = _record_key(config.pdp.proxy_key, False)
    opened = open_store(settings, timeout=30.0)
    opened.record_key = record_key  # read only: this command writes no record
    store = cast(AuditStore, opened)
    try:
        await store.start()
        summary = await export_bundle(
            store,
            signer,
            Path(args.out),
            since,
            until,
            anchor,
            str(anchor_path),
            also=[(head, str(head_path_for(anchor_path)))],
            withhold_values=args.withhold_values,
        )
    except StoreUnavailable as exc:
        return _fail(str(exc))
    except StoreUnverified as bad:
        # a bundle signs what it holds as the PDP's chain: never a chain that fails
        print("no bundle written: the audit store does not verify")
        _print_problems(bad.problems)
        return EXIT_BAD
    finally:
        await store.close()
    print(
        f"wrote {summary.path}: {summary.records} records"
        f" (seq {summary.first_seq}..{summary.last_seq}), signed by key {signer.key_id}"
        + (" (values withheld)" if args.withhold_values else "")
    )
    return 0


def cmd_audit_acknowledge(args: argparse.Namespace) -> int:
    return asyncio.run(_acknowledge(args))


async def _acknowledge(args: argparse.Namespace) -> int:
    """Append an audit.foreign_acknowledged record (MAC'd: it needs the proxy key) naming
    the foreign records up to --through by range and the chain's hash at each range's
    end. The records stay in the chain, named; checkpoints then go on past them."""
    import getpass

    from pdp.cli import _config
    from pdp.evidence.checkpoints import ACK_KIND, anchor_path_for, verify_store
    from pdp.store import AuditStore, StoreUnavailable, open_store

    config = _config(args)
    if not args.reason.strip():
        return _fail("--reason must say why")
    record_key, unreadable = _record_key(config.pdp.proxy_key, True)
    if record_key is None:
        return _fail(unreadable)
    if not config.pdp.signing_key.exists():
        return _fail(f"signing key {config.pdp.signing_key} not found")
    public_key = _signing_key(config, config.pdp.signing_key).public_key()
    anchor_path = anchor_path_for(config.pdp.signing_key)
    anchor, unreadable = _anchor(anchor_path)
    if unreadable:
        return _fail(unreadable)
    settings = config.pdp.store
    if settings.type == "sqlite" and not settings.path.exists():
        return _fail(f"audit store {settings.path} does not exist")
    opened = open_store(settings, timeout=30.0)
    opened.record_key = record_key  # the acknowledgement is a record of the PDP's
    store = cast(AuditStore, opened)
    try:
        await store.start()
        report = await verify_store(store, public_key, anchor, str(anchor_path), record_key)
        foreign = [r for r in report.foreign if r[1] <= args.through]
        other = [p for p in report.problems if "no valid record MAC" not in p.text]
        if other:
            print("nothing acknowledged: the audit store does not verify otherwise")
            _print_problems(other)
            return EXIT_BAD
        pending = foreign  # (report.foreign: not acknowledged before)
        if not pending:
            print(f"nothing to acknowledge: no foreign record up to seq {args.through}")
            return 0
        ranges = []
        for first, last in pending:
            found = await store.query(after_seq=last - 1, limit=1)
            ranges.append([first, last, found[0].hash])
        record = await store.append(
            ACK_KIND,
            {
                "ranges": ranges,
                "reason": args.reason,
                "by": getpass.getuser(),
                "note": "records INSERTed into the store by someone without the PDP's key:"
                " kept in the chain, reviewed, and no longer stopping checkpoints",
            },
        )
    except StoreUnavailable as exc:
        return _fail(str(exc))
    finally:
        await store.close()
    named = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b, _ in ranges)
    print(f"acknowledged foreign records {named} in record seq {record.seq}")
    return 0


def cmd_audit_rotate_key(args: argparse.Namespace) -> int:
    return asyncio.run(_rotate_key(args))


async def _rotate_key(args: argparse.Namespace) -> int:
    """Rotate the signing key (pdp.evidence.rotation): verify the store with the key in
    use, append the rotation record (signed by the old key and the new, MAC'd: it needs
    the proxy key) and a checkpoint by the new key, then put the new key in the old one's
    place. The new key waits beside the old one (`<signing_key>.next`) until the rotation
    is committed, so a run cut short loses neither: run again to finish it."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pdp.cli import _config
    from pdp.evidence.checkpoints import (
        CheckpointWriter,
        anchor_path_for,
        head_path_for,
        verify_store,
    )
    from pdp.evidence.rotation import (
        ROTATION_KIND,
        lost_key_rotation_body,
        read_rotation,
        rotation_body,
    )
    from pdp.evidence.signing import Signer, key_id_of, load_public_pem, public_pem
    from pdp.store import AuditStore, StoreUnavailable, open_store

    config = _config(args)
    if not args.reason.strip():
        return _fail("--reason must say why")
    key_path = config.pdp.signing_key
    lost = bool(args.old_key_lost)
    if lost != bool(args.old_public_key):
        return _fail("--old-key-lost and --old-public-key go together")
    if not lost and not key_path.exists():
        return _fail(f"signing key {key_path} not found (lost? see --old-key-lost)")
    record_key, unreadable = _record_key(config.pdp.proxy_key, True)
    if record_key is None:
        return _fail(unreadable)
    settings = config.pdp.store
    if settings.type == "sqlite" and not settings.path.exists():
        return _fail(f"audit store {settings.path} does not exist")
    try:
        if lost:
            old_public = load_public_pem(Path(args.old_public_key).read_bytes())
            old_id = key_id_of(old_public)
            if key_path.exists() and Signer(_signing_key(config, key_path)).key_id == old_id:
                return _fail(f"{key_path} is the key named lost: rotate without --old-key-lost")
        else:
            old = Signer(_signing_key(config, key_path))
            old_public, old_id = old.public_key, old.key_id
        next_path = key_path.with_name(key_path.name + ".next")
        if not next_path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(next_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
        new = Signer(_signing_key(config, next_path))
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    anchor_path = anchor_path_for(key_path)
    anchor, unreadable = _anchor(anchor_path)
    if unreadable:
        return _fail(unreadable)
    head_file, unreadable = _anchor(head_path_for(anchor_path))
    if unreadable:
        return _fail(unreadable)
    opened = open_store(settings, timeout=30.0)
    opened.record_key = record_key  # the rotation is a record of the PDP's
    store = cast(AuditStore, opened)
    try:
        await store.start()
        done = [
            r
            for r in await store.query(kind=ROTATION_KIND)
            if (rotated := read_rotation(r.seq, r.body)[0]) is not None
            and (rotated.old_id, rotated.new_id) == (old_id, new.key_id)
        ]
        if not done:
            report = await verify_store(
                store,
                old_public,
                anchor,
                str(anchor_path),
                record_key,
                also=[(head_file, str(head_path_for(anchor_path)))],
            )
            if not report.ok:
                # a rotation vouches, with the old key, for the chain up to it
                print("no key rotated: the audit store does not verify with the key in use")
                _print_problems(report.problems)
                return EXIT_BAD
            reason = args.reason.strip()
            body = (
                lost_key_rotation_body(old_public, new, report.head, reason)
                if lost
                else rotation_body(old, new, report.head, reason)
            )
            record = await store.append(ROTATION_KIND, body)
        else:
            record = done[0]
        writer = CheckpointWriter(store, new, anchor_path=anchor_path, record_key=record_key)
        await writer.checkpoint()
    except StoreUnavailable as exc:
        return _fail(str(exc))
    finally:
        await store.close()
    retired = key_path.with_name(f"{key_path.name}.{old_id}.pub")
    retired.write_bytes(public_pem(old_public))
    # what auditors pin from now on: a pin of the old key verifies nothing after this
    # rotation (its thief could sign a hand-over too: pdp.evidence.rotation)
    announced = key_path.with_name(f"{key_path.name}.{new.key_id}.pub")
    announced.write_bytes(new.public_pem())
    os.replace(next_path, key_path)  # the old private key is gone: it signs no more
    print(
        f"rotated the signing key {old_id} -> {new.key_id} at seq {record.seq}"
        + (" (the old key declared lost: signed by the new key alone)" if lost else "")
        + f" (old public key kept in {retired}); restart every PDP with {key_path} now:"
        " one still holding the old key signs no more checkpoints"
    )
    print(
        f"give auditors the new public key {announced} out of band: audit verify"
        " --public-key takes the current key only"
    )
    return 0
