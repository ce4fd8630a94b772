"""`portcullis sessions list` and `portcullis sessions replay SESSION` (also `portcullis replay`).

Owns the command-line side of session recordings: argument parsing, reading the audit
store named by the configuration (read-only use: nothing is appended), and printing. The
timeline itself is built by `pdp.domain.timeline`, which does no IO.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from pdp.api.proxy_auth import ProxyKey
from pdp.cli import terminal_replay
from pdp.domain.approvals import APPROVAL_KEY_PURPOSE, believed_approvals
from pdp.domain.timeline import SessionSummary, build_timeline, render_text, rfc3339, summarize
from pdp.evidence.bundle import parse_time as absolute_time
from pdp.evidence.checkpoints import not_written_by_pdp
from pdp.plumbing.rendering import inert
from pdp.store import AuditRecord, AuditStore, StoreUnavailable, open_store
from pdp.store.macs import KEY_PURPOSE as RECORD_KEY_PURPOSE
from portcullis.config import load_config

EXIT_NOT_FOUND = 1
EXIT_STORE = 1
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time: RFC 3339 / ISO 8601 (UTC if no offset), a date, unix seconds, or
    an age such as 90s, 30m, 12h, 7d, 2w (that long before now)."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNITS[match[2]]
    try:
        return absolute_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 2024-05-01, 2024-05-01T12:00:00Z, 1h or 7d"
        ) from None


def register(subparsers: Any) -> None:
    """Add `sessions list|replay` and the `replay` shortcut to the top-level parser."""
    sessions = subparsers.add_parser("sessions", help="list and replay recorded sessions")
    ssub = sessions.add_subparsers(dest="sessions_command", required=True)

    listing = ssub.add_parser("list", help="recorded sessions, oldest first")
    listing.add_argument("--subject", default=None, help="only this subject")
    listing.add_argument("--connection", default=None, help="only this connection")
    listing.add_argument(
        "--since", type=parse_time, default=None, help="opened at or after: RFC 3339 time or 1h/7d"
    )
    listing.add_argument("--until", type=parse_time, default=None, help="opened before this time")
    listing.add_argument("--limit", type=int, default=None, help="only the newest N")
    _format_option(listing)
    listing.set_defaults(func=cmd_sessions_list)

    for parser in (
        ssub.add_parser("replay", help="the timeline of one session"),
        subparsers.add_parser("replay", help="the timeline of one session (sessions replay)"),
    ):
        parser.add_argument("session", help="session id (or a unique prefix of one)")
        _format_option(parser, "asciicast")
        terminal_replay.add_options(parser)
        parser.set_defaults(func=cmd_sessions_replay)


def _format_option(parser: argparse.ArgumentParser, *more: str) -> None:
    parser.add_argument(
        "--format",
        choices=["text", "json", *more],
        default="text",
        help="text (default) for people, json for programs"
        + (", asciicast: the terminal recording" if "asciicast" in more else ""),
    )


# -- commands -------------------------------------------------------------------------------


def cmd_sessions_list(args: argparse.Namespace) -> int:
    return _run(args, _list)


def cmd_sessions_replay(args: argparse.Namespace) -> int:
    return _run(args, _replay)


def _run(args: argparse.Namespace, body: Any) -> int:
    from pdp.cli import config_path

    config = load_config(config_path(args))
    settings = config.pdp.store
    # who wrote the records shown is checked with keys derived from the PDP's proxy key
    args.proxy_key, args.unchecked = _proxy_key(config.pdp.proxy_key)
    if settings.type == "sqlite" and not settings.path.is_file():
        print(f"portcullis: no audit store at {settings.path}", file=sys.stderr)
        return EXIT_STORE

    async def main() -> int:
        store = open_store(settings)
        if args.proxy_key is not None and hasattr(store, "record_key"):
            store.record_key = args.proxy_key.derive(RECORD_KEY_PURPOSE)  # read only
        try:
            await store.start()
        except StoreUnavailable as exc:
            print(f"portcullis: {exc}", file=sys.stderr)
            return EXIT_STORE
        try:
            return int(await body(store, args))
        finally:
            await store.close()

    return asyncio.run(main())


async def _list(store: AuditStore, args: argparse.Namespace) -> int:
    opened = await store.query(
        kind="session.open", subject=args.subject, since=args.since, until=args.until
    )
    if args.connection is not None:
        opened = [r for r in opened if _connection_name(r) == args.connection]
    if args.limit is not None:
        opened = opened[-args.limit :] if args.limit > 0 else []
    closes: dict[str, AuditRecord] = {}
    if opened:
        for record in await store.query(kind="session.close", since=args.since):
            closes.setdefault(record.session_id, record)
    summaries = [summarize(r, closes.get(r.session_id)) for r in opened]
    forged = set(await not_written_by_pdp(store, opened))
    note = _unchecked_note(args) or (
        "sessions "
        + ", ".join(inert(r.session_id) for r in opened if r.seq in forged)
        + ": their session.open records have no valid record MAC (INSERTed into the store"
        " by someone else, or written before record MACs)"
        if forged
        else ""
    )
    if note:
        print(f"note: {note}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        sys.stdout.write(_table(summaries))
        if forged:
            sys.stdout.write(f"\nNOTE: {note}\n")
    return 0


async def _replay(store: AuditStore, args: argparse.Namespace) -> int:
    opened = await _find_session(store, args.session)
    if opened is None:
        print(f"portcullis: no recorded session {args.session!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    sid = opened.session_id
    closed = await store.query(kind="session.close", session_id=sid, limit=1)
    events = await store.query(kind="session.events", session_id=sid)
    decisions = await store.query(kind="decision", session_id=sid)
    asked = await store.query(kind="approval", session_id=sid)
    if args.format == "asciicast":
        return terminal_replay.export(terminal_replay.recorded(events), args)
    approvals, left_out = _believed_approvals(asked, args.proxy_key)
    forged = await not_written_by_pdp(store, [opened, *closed, *events, *decisions, *asked])
    notes = [_unchecked_note(args)] if args.proxy_key is None else []
    if left_out:
        notes.append(
            f"approval records seq {_seqs(left_out)} left out: not written by a PDP holding"
            " the key (no valid MAC; INSERTed by someone else?)"
        )
    others = [seq for seq in forged if seq not in left_out]
    if others:
        notes.append(
            f"records seq {_seqs(others)} of this session have no valid record MAC (INSERTed"
            " into the store by someone else, or written before record MACs): what they say"
            " below is not vouched for by the PDP"
        )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    timeline = build_timeline(opened, closed[0] if closed else None, events, decisions, approvals)
    if args.format == "json":
        print(json.dumps(timeline.to_dict(), indent=2))
    else:
        for note in notes[1 if args.proxy_key is None else 0 :]:
            sys.stdout.write(f"NOTE: {note}\n\n")
        sys.stdout.write(render_text(timeline))
        terminal_replay.after_timeline(terminal_replay.recorded(events), args)
    return 0


def _proxy_key(path: Path) -> tuple[ProxyKey | None, str]:
    """The PDP's proxy key, or None and why it cannot be read."""
    try:
        return ProxyKey(bytes.fromhex(path.read_text().strip())), ""
    except (OSError, ValueError) as exc:
        return None, f"proxy key {path}: {type(exc).__name__}"


def _unchecked_note(args: argparse.Namespace) -> str:
    if args.proxy_key is None:
        return (
            f"who wrote these records was not checked ({args.unchecked}): run where the"
            " PDP's proxy key is readable; what is shown is what the store says, unverified"
        )
    return ""


def _believed_approvals(
    records: list[AuditRecord], proxy_key: ProxyKey | None
) -> tuple[list[AuditRecord], list[int]]:
    """The approval records a PDP holding the proxy key wrote, and the seqs of those left
    out. An approval record is shown as fact ("approved by sam") only when its MAC checks:
    anyone who may INSERT into the store can append one. Without the key, all (unverified,
    which the replay says)."""
    if proxy_key is None:
        return records, []
    return believed_approvals(proxy_key.derive(APPROVAL_KEY_PURPOSE), records)


def _seqs(seqs: list[int]) -> str:
    return ", ".join(str(seq) for seq in seqs[:10]) + (" ..." if len(seqs) > 10 else "")


async def _find_session(store: AuditStore, wanted: str) -> AuditRecord | None:
    found = await store.query(kind="session.open", session_id=wanted, limit=1)
    if found:
        return found[0]
    if len(wanted) < 6:  # a prefix this short would match by accident
        return None
    matches = [r for r in await store.query(kind="session.open") if r.session_id.startswith(wanted)]
    if len(matches) > 1:
        print(f"portcullis: {wanted!r} matches {len(matches)} sessions", file=sys.stderr)
    return matches[0] if len(matches) == 1 else None


def _connection_name(record: AuditRecord) -> str:
    session = record.body.get("session") or {}
    return str((session.get("connection") or {}).get("name") or record.body.get("connection", ""))


def _table(summaries: list[SessionSummary]) -> str:
    header = ("SESSION", "STARTED", "SUBJECT", "CONNECTION", "VERDICT", "STATUS", "DURATION",
              "COMMANDS", "CLIENT")  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    for s in summaries:
        rows.append(
            tuple(
                inert(cell)
                for cell in (
                    s.session_id,
                    rfc3339(s.started_at),
                    s.subject,
                    s.connection,
                    s.verdict,
                    s.status,
                    f"{s.duration_seconds:g}s" if s.duration_seconds is not None else "-",
                    str(s.commands) if s.commands is not None else "-",
                    f"{s.client or '-'}@{s.client_addr or '-'}",
                )
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    if not summaries:
        lines.append("(no sessions)")
    return "\n".join(lines) + "\n"
