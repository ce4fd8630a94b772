"""`portcullis approvals list | approve ID | deny ID`: approvers acting with their own token.

Owns the command line of approving; every check (token, who may approve, never the
requester) happens at the PDP, which this only asks over gRPC. The approver's token goes
to the PDP over TLS whenever the PDP is configured for it (`proxies.pdp.ca_file`, or
`--ca-file`; with a client certificate, `cert_file` + `key_file`, when the PDP asks for
one), its certificate checked; a PDP this host reaches only over the network is never
sent a token in clear (the token approves: anyone on the path could replay it).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from pathlib import Path
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


async def _call(
    address: str, method: str, request: Any, credentials: grpc.ChannelCredentials | None
) -> Any:
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    async with channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        return await getattr(stub, method)(request, timeout=10)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SystemExit(
            f"portcullis approvals: cannot read {what} {path}: {exc.strerror}"
        ) from None


def channel_credentials(config: Any, args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS to the PDP (None: in clear). --ca-file, --cert-file and --key-file, else
    proxies.pdp's files; TLS too when the PDP of this configuration serves it (pdp.tls),
    then checked against the system's roots unless a CA is given."""
    given = config.proxies.pdp
    ca = getattr(args, "ca_file", None) or given.ca_file
    cert = getattr(args, "cert_file", None) or given.cert_file
    key = getattr(args, "key_file", None) or given.key_file
    if bool(cert) != bool(key):
        raise SystemExit("portcullis approvals: a client certificate needs both its file and key")
    if not (ca or cert or config.pdp.tls is not None):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(Path(ca), "the CA file") if ca else None,
        private_key=_read(Path(key), "the key file") if key else None,
        certificate_chain=_read(Path(cert), "the certificate file") if cert else None,
    )


def on_this_host(address: str) -> bool:
    """Whether a gRPC target is this host's: a Unix socket, a loopback address, localhost."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    target = address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = (target.rpartition(":")[0] if ":" in target else target).strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace, method: str, request: Any) -> Any:
    from pdp.cli import _config

    config = _config(args, strict=False)
    address = args.pdp or config.proxies.pdp.address or config.pdp.address or config.pdp.listen
    credentials = channel_credentials(config, args)
    if credentials is None and not on_this_host(address):
        raise SystemExit(
            f"portcullis approvals: refusing to send your token in clear to the PDP at "
            f"{address}: give its CA (--ca-file, or proxies.pdp.ca_file) to reach it over TLS"
        )
    try:
        return asyncio.run(_call(address, method, request, credentials))
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
    approvals = sub.add_parser(
        "approvals", help="list, show, approve and deny approval requests; withdraw your own"
    )
    asub = approvals.add_subparsers(dest="approvals_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--token", default=None, help="your token (or PORTCULLIS_TOKEN)")
    common.add_argument("--pdp", default=None, help="PDP address (default: from the config)")
    common.add_argument("--ca-file", default=None, help="CA of the PDP's TLS certificate")
    common.add_argument("--cert-file", default=None, help="your client certificate (mTLS)")
    common.add_argument("--key-file", default=None, help="its key")
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
