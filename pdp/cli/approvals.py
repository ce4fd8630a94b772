"""`portcullis approvals list | approve ID | deny ID`: approvers acting with their own token.

Owns the command line of approving; every check (token, who may approve, never the
requester) happens at the PDP, which this only asks over gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import grpc
from google.protobuf import json_format

from pdp.domain.approver_view import mixed_scripts_note
from pdp.plumbing.rendering import inert, statement_lines
from pdp.plumbing.timestamps import outward
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc

EXIT_REFUSED = 1


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("PORTCULLIS_TOKEN", "")
    if not token:
        raise SystemExit("portcullis approvals: give your token with --token or PORTCULLIS_TOKEN")
    return token


async def _call(address: str, method: str, request: Any) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        return await getattr(stub, method)(request, timeout=10)


def _run(args: argparse.Namespace, method: str, request: Any) -> Any:
    from pdp.cli import _config

    config = _config(args, strict=False)
    address = args.pdp or config.pdp.address or config.pdp.listen
    try:
        return asyncio.run(_call(address, method, request))
    except grpc.aio.AioRpcError as exc:
        print(f"portcullis approvals: {exc.details()}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None


def _line(a: pdp_pb2.Approval) -> str:
    """One request for a person: who, where, why, then every statement in full (client
    text made inert: pdp.plumbing.rendering)."""
    age = int(time.time() - a.created_at)
    decided = f" by {inert(a.approver)}" if a.approver else ""
    lines = [
        f"{a.id}  {a.state}{decided}  {inert(a.requester)} on {inert(a.connection)}  "
        f"{age}s ago  ({inert('; '.join(a.reasons))})"
    ]
    if a.justification:
        lines.append(f"    justification: {inert(a.justification)}")
    shown = [{"text": s.text, "classification": list(s.classification)} for s in a.statements]
    if shown:
        lines.extend(statement_lines(shown))
    else:
        # not SQL (HTTP, MCP, SSH: the PDP gives statements for postgres.* alone): read as
        # SQL, `show all` run by a shell was labelled a Postgres SHOW
        lines.append(f"    command: {inert(a.command)}")
    for n, value in enumerate(a.parameters, 1):
        lines.append(f"    ${n} = {inert(value)}")
    return "\n".join(_flagged(line) for line in lines)


def _flagged(line: str) -> str:
    """`line` (client text already inert) and, after it, the words in it whose letters
    mix scripts: `FROM orders` with a Cyrillic o (U+043E) reads as `orders` in any terminal."""
    return line + inert(mixed_scripts_note(line))


def _as_json(approval: Any) -> Any:
    """A request as the HTTP API shows it: snake_case keys, every field, RFC 3339 times."""
    return outward(
        json_format.MessageToDict(
            approval, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )


def cmd_list(args: argparse.Namespace) -> int:
    response = _run(
        args,
        "ListApprovals",
        pdp_pb2.ListApprovalsRequest(token=_token(args), pending_only=args.pending),
    )
    if args.format == "json":
        print(json.dumps([_as_json(a) for a in response.approvals], indent=2))
    else:
        for approval in response.approvals:
            print(_line(approval))
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    """The requester withdraws their own pending request."""
    response = _run(
        args,
        "WithdrawApproval",
        pdp_pb2.WithdrawApprovalRequest(
            token=_token(args), approval_id=args.id, reason=args.reason or "withdrawn"
        ),
    )
    print(_line(response.approval))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """One request in full: every statement, its values and its history."""
    response = _run(
        args,
        "ListApprovals",
        pdp_pb2.ListApprovalsRequest(token=_token(args), pending_only=False),
    )
    found = [a for a in response.approvals if a.id == args.id]
    if not found:
        print(
            f"portcullis approvals: no request {args.id!r} you may see (a listing holds at"
            " most one gRPC message: pending requests first, then the newest)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    approval = found[0]
    if args.format == "json":
        print(json.dumps(_as_json(approval), indent=2))
        return 0
    print(_line(approval))
    print(_flagged(f"    approvers: {inert(', '.join(approval.approvers))}"))
    if approval.decision_reason:
        print(_flagged(f"    decided: {inert(approval.decision_reason)}"))
    print(f"    history: {inert(', '.join(approval.events)) or '-'}")
    return 0


def _resolve(args: argparse.Namespace, approve: bool) -> int:
    response = _run(
        args,
        "ResolveApproval",
        pdp_pb2.ResolveApprovalRequest(
            token=_token(args), approval_id=args.id, approve=approve, reason=args.reason
        ),
    )
    print(_line(response.approval))
    return 0


def register(sub: Any) -> None:
    approvals = sub.add_parser("approvals", help="list, approve and deny approval requests")
    asub = approvals.add_subparsers(dest="approvals_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--token", default=None, help="your token (or PORTCULLIS_TOKEN)")
    common.add_argument("--pdp", default=None, help="PDP address (default: from the config)")
    listing = asub.add_parser("list", parents=[common], help="approval requests")
    listing.add_argument("--pending", action="store_true", help="only undecided ones")
    listing.add_argument("--format", choices=["text", "json"], default="text")
    listing.set_defaults(func=cmd_list)
    withdraw = asub.add_parser("withdraw", parents=[common], help="withdraw your own request")
    withdraw.add_argument("id")
    withdraw.add_argument("--reason", default="", help="why (kept with the record)")
    withdraw.set_defaults(func=cmd_withdraw)
    show = asub.add_parser("show", parents=[common], help="one request in full")
    show.add_argument("id")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.set_defaults(func=cmd_show)
    for name, approve in (("approve", True), ("deny", False)):
        action = asub.add_parser(name, parents=[common], help=f"{name} a request")
        action.add_argument("id")
        action.add_argument("--reason", required=True, help="why (kept with the record)")
        action.set_defaults(func=lambda args, approve=approve: _resolve(args, approve))
