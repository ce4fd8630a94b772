"""`portcullis policy build | diff`: a policy directory as an OPA bundle; a candidate
policy replayed against the decisions recorded in the audit store.

build  writes a standard OPA bundle (pdp.engine.opa_bundle), optionally signed; prints
       the revision and roots. Exit 0 written, 1 the policy does not load, 2 usage.
diff   replays the decisions of a period (pdp.engine.replay) and prints which would
       change, counted by (before → after, rule) with examples. Exit 0 nothing would
       change, 1 something would (as diff(1)), 2 the command cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

EXIT_CHANGED = 1
EXIT_USAGE = 2


def register(policy_subparsers: Any) -> None:
    from pdp.cli.sessions import parse_time

    build = policy_subparsers.add_parser(
        "build", help="write the policy directory as an OPA bundle (.tar.gz), optionally signed"
    )
    build.add_argument("path", nargs="?", default="rego", help="policy directory")
    build.add_argument("--out", required=True, help="bundle file to write, e.g. bundle.tar.gz")
    build.add_argument(
        "--signing-key", default=None, help="PEM private key (RS*/ES*/PS*) or HMAC secret file"
    )
    build.add_argument("--signing-alg", default="RS256", help="RS256 (default), HS256, ...")
    build.add_argument("--key-id", default="", help="`kid` of the signature (OPA's keyid)")
    build.add_argument("--scope", default="", help="`scope` claim of the signature")
    build.set_defaults(func=cmd_policy_build)

    diff = policy_subparsers.add_parser(
        "diff", help="replay recorded decisions against another policy directory"
    )
    diff.add_argument(
        "--since", type=parse_time, default="24h", help="decisions from: 24h (default), RFC 3339"
    )
    diff.add_argument("--until", type=parse_time, default=None, help="decisions before this")
    diff.add_argument("--policies", required=True, help="the candidate policy directory")
    diff.add_argument("--connection", default=None, help="only decisions of this connection")
    diff.add_argument("--json", action="store_true", help="print the report as JSON")
    diff.set_defaults(func=cmd_policy_diff)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"portcullis policy: {message}", file=sys.stderr)
    return code


def cmd_policy_build(args: argparse.Namespace) -> int:
    from pdp.engine import opa_bundle
    from pdp.engine.bundle import BundleError, load_bundle
    from pdp.engine.opa import PolicyLoadError, new_engine

    signing = None
    if args.signing_key:
        if args.signing_alg not in opa_bundle.SIGNING_ALGORITHMS:
            return _fail(f"--signing-alg {args.signing_alg}: not one of the JWS algorithms")
        try:
            key = Path(args.signing_key).read_bytes()
        except OSError as exc:
            return _fail(f"--signing-key {args.signing_key}: {exc.strerror}")
        signing = opa_bundle.SigningKey(key, args.signing_alg, args.key_id, args.scope)
    try:  # as opa build does: what does not compile and evaluate once is no bundle
        new_engine(load_bundle(args.path).without_tests()).close()
        data, manifest = opa_bundle.build(args.path, signing)
    except BundleError as exc:
        return _fail(str(exc), 1)
    except PolicyLoadError as exc:
        return _fail(f"{args.path}: the policy does not compile: {exc}", 1)
    except Exception as exc:  # a key PyJWT cannot sign with: its own words, no key bytes
        return _fail(f"cannot sign: {type(exc).__name__}: {exc}")
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)  # whole or not at all: a bundle server may be serving this path
    signed = f"signed {args.signing_alg}" if signing else "unsigned"
    print(
        f"wrote {out}: revision {manifest['revision']}, roots {', '.join(manifest['roots'])}, "
        f"{len(data)} bytes, {signed}",
        file=sys.stderr,
    )
    return 0


def cmd_policy_diff(args: argparse.Namespace) -> int:
    from pdp.cli import config_path
    from pdp.engine.bundle import BundleError, load_bundle
    from pdp.engine.opa import PolicyLoadError
    from pdp.engine.replay import Replayer
    from portcullis.config import load_config

    try:
        candidate = load_bundle(args.policies).without_tests()
        replayer = Replayer(candidate)
    except (BundleError, PolicyLoadError) as exc:
        return _fail(f"--policies {args.policies}: the policy does not load: {exc}", 1)
    config = load_config(config_path(args))
    settings = config.pdp.store
    if settings.type == "sqlite" and not settings.path.is_file():
        return _fail(f"no audit store at {settings.path}")
    try:
        report = asyncio.run(_replay(settings, args, replayer))
    finally:
        replayer.close()
    if report is None:
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        _print_report(report, args)
    return EXIT_CHANGED if report.changes else 0


async def _replay(settings: Any, args: argparse.Namespace, replayer: Any) -> Any:
    from pdp.store import AuditStore, StoreUnavailable, open_store

    store = open_store(settings)
    reader = cast(AuditStore, store)  # every backend answers queries
    try:
        await store.start()
    except StoreUnavailable as exc:
        print(f"portcullis policy diff: {exc}", file=sys.stderr)
        return None
    try:
        records = [
            r
            for kind in ("session.open", "decision")
            for r in await reader.query(kind=kind, since=args.since, until=args.until)
            if args.connection is None or r.body.get("connection") == args.connection
        ]
        records.sort(key=lambda r: r.seq)
        sessions: dict[str, dict[str, Any]] = {
            r.session_id: r.body for r in records if r.kind == "session.open"
        }
        for sid in {r.session_id for r in records} - set(sessions):
            # a session opened before the period: its open record is older
            opened = await reader.query(kind="session.open", session_id=sid, limit=1)
            if opened:
                sessions[sid] = opened[0].body
        for sid, body in sessions.items():
            sessions[sid] = await _with_claims(reader, sid, body)
        return replayer.diff(records, sessions)
    finally:
        await store.close()


async def _with_claims(reader: Any, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A session.open body with the token claims it commits (pdp.domain.claims) taken back
    from the session's session.claims records: the policy replayed reads them as it did."""
    from pdp.domain.claims import CLAIMS_KIND, is_commitment, revealed

    session = body.get("session")
    if not isinstance(session, dict) or not isinstance(session.get("identity"), dict):
        return body
    identity: dict[str, Any] = session["identity"]
    claims = identity.get("claims")
    if not isinstance(claims, dict) or not any(is_commitment(v) for v in claims.values()):
        return body
    opened = [r.body for r in await reader.query(kind=CLAIMS_KIND, session_id=session_id)]
    identity = {**identity, "claims": revealed(claims, opened)}
    return {**body, "session": {**session, "identity": identity}}


def _print_report(report: Any, args: argparse.Namespace) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.since))
    print(
        f"replayed {report.replayed} decisions recorded since {since} against "
        f"{args.policies} (revision {report.candidate_revision})"
    )
    if report.recorded_revisions:
        revisions = ", ".join(f"{r or '?'} ({n})" for r, n in report.recorded_revisions.items())
        print(f"recorded under: {revisions}")
    print(f"would change: {len(report.changes)}; unchanged: {report.unchanged}")
    for reason, count in report.skipped.items():
        print(f"not replayed: {count} ({reason})")
    from pdp.engine.replay import label
    from pdp.plumbing.rendering import inert

    # recorded commands, subjects and a rule's reasons (which may quote them) are a
    # client's text: made inert, so none acts on the operator's terminal
    for (before, after, rule), changes in report.by_rule():
        print()
        print(inert(f"  {len(changes):6d}  {label(before, after)}   rule: {rule}"))
        for change in changes[:3]:
            raw = " ".join(change.raw.split())[:120]
            print(
                inert(
                    f"          e.g. {change.decision_id} {change.subject} "
                    f"{change.connection} {change.kind}: {raw}"
                )
            )
    print(
        "\nnote: session.open replays see open_sessions = 0; decisions after an approval "
        "see it approved (the approver is not replayed)"
    )
