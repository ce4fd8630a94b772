"""`portcullis config check`, `portcullis status` and `portcullis metrics credential`:
what would start, what runs, and who may scrape it.

Owns these operator commands. `config check` reads the configuration (every key,
every served connection's `${NAME}` secrets), compiles the policy with the real OPA
evaluator and evaluates it once, and prints what `portcullis up` would start; it starts
nothing. `status` asks a running PDP (gRPC health and ServerInfo, and its HTTP
`/v1/status` when `pdp.http_listen` is set, with the local proxy credential) and reads
the audit store's chain head. `metrics credential` writes the credential a Prometheus
scrape of the PDP's /metrics sends as its bearer token: a proxy credential that names no
connection, so it serves no session.
Exit codes: 0 fine, 2 the configuration or policy is bad / the PDP is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_BAD = 2


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="check the configuration and the policy")
    csub = config.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser(
        "check",
        help="validate the configuration and the policy; print what `up` would start",
        description="Validate the configuration (every key, the secrets of served "
        "connections) and the policy (compiled and evaluated once with the embedded OPA "
        "evaluator), then print what `portcullis up` would start. Starts nothing. "
        "Exit 0 when everything is fine, 2 naming the first problem.",
    )
    check.set_defaults(func=cmd_config_check)
    status = sub.add_parser(
        "status",
        help="PDP reachable?, policy revision, proxies and their sessions, store and chain head",
        description="Ask the running PDP (gRPC health and ServerInfo; its HTTP /v1/status "
        "when pdp.http_listen is set) and read the audit store's chain head. Exit 2 when "
        "the PDP cannot be reached.",
    )
    status.add_argument("--pdp", default=None, help="PDP address (default: from the config)")
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.set_defaults(func=cmd_status)
    metrics = sub.add_parser("metrics", help="who may scrape the PDP's /metrics")
    msub = metrics.add_subparsers(dest="metrics_command", required=True)
    scrape = msub.add_parser(
        "credential",
        help="write a scrape-only credential for the PDP's /metrics (Prometheus' bearer token)",
        description="Issue a proxy credential that names no connection, from the PDP's "
        "proxy key (pdp.proxy_key): it opens the PDP's /metrics and /v1/status and serves no "
        "session. Give the file to Prometheus as authorization: {credentials_file: FILE}.",
    )
    scrape.add_argument("--name", default="prometheus", help="the scraper's name")
    scrape.add_argument("--out", type=Path, default=None, help="write it here (0600)")
    scrape.set_defaults(func=cmd_metrics_credential)


def cmd_metrics_credential(args: argparse.Namespace) -> int:
    from pdp.api.proxy_auth import ProxyKey, write_private
    from pdp.cli import _config

    config = _config(args)
    credential = ProxyKey.load_or_create(
        config.pdp.proxy_key, allow_readable=config.pdp.insecure_readable_key_files
    ).issue(args.name, [])
    if args.out is None:
        print(credential)
    else:
        write_private(args.out, credential.encode() + b"\n")
        print(f"wrote {args.out} (0600): a scrape-only credential named {args.name!r}")
    return EXIT_OK


# -- config check ---------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from pdp.cli import _config, _served_secrets, config_path
    from proxies.launcher import served

    config = _config(args)  # a ConfigError here is printed by main() with exit 2
    _served_secrets(config)
    revision = _check_policy(config)
    if revision is None:
        return EXIT_BAD
    serving = {c.name for c in served(config.connections)}
    lines = [f"configuration {config_path(args)}: OK"]
    engine = config.pdp.engine
    if engine.type == "embedded":
        workers = engine.workers or "one per core"
        source = engine.bundle or engine.policies
        signed = ", signature verified" if engine.verification else ""
        lines.append(
            f"policy {source}: OK, revision {revision}{signed} "
            f"(embedded OPA, {workers} workers, {engine.timeout_ms} ms deadline)"
        )
    else:
        lines.append(f"policy: remote OPA at {engine.url} (not contacted)")
    store = config.pdp.store
    where = store.path if store.type == "sqlite" else "(dsn from the configuration)"
    lines.append(f"store: {store.type} {where}")
    lines.append(
        f"PDP: gRPC on {config.pdp.listen}"
        + (f", HTTP on {config.pdp.http_listen}" if config.pdp.http_listen else "")
        + (", TLS" if config.pdp.tls else "")
    )
    lines.append(f"identity: {'dev issuer' if config.identity.dev else config.identity.issuer}")
    lines.extend(f"WARNING: {w}" for w in insecure_settings(config))
    for c in config.connections:
        if c.name in serving:
            shadow = "  SHADOW MODE: nothing enforced" if c.options.get("enforce") is False else ""
            if c.options.get("recording") is False:
                shadow += "  RECORDING OFF: no session events"
            lines.append(f"proxy {c.name} ({c.type}): {c.listen} → {c.upstream}{shadow}")
            missing = _missing_key_file(c, Path(config_path(args)).resolve().parent)
            if missing:
                lines.append(
                    f"  NOTE: its upstream key {missing} cannot be read: logins are refused"
                    f" until it can (ssh-keygen -t ed25519 -N '' -f {missing}; its .pub in"
                    " the upstream user's authorized_keys)"
                )
        else:
            lines.append(
                f"proxy {c.name} ({c.type}): NOT SERVED — this build has no {c.type} proxy yet"
            )
    print("\n".join(lines))
    return EXIT_OK


def _missing_key_file(connection: Any, folder: Path) -> str:
    """A static credential's `private_key_file` that is not a readable file (resolved as
    every relative path of the configuration, beside it), or "" (none named, one from the
    environment, or there)."""
    key_file = connection.credentials.get("private_key_file")
    if not isinstance(key_file, str) or not key_file or "${" in key_file:
        return ""
    path = Path(key_file) if Path(key_file).is_absolute() else folder / key_file
    try:
        with path.open("rb"):
            return ""
    except OSError:
        return str(path)


def _check_policy(config: Any) -> str | None:
    """Compile and evaluate the embedded policy once; its revision, or None (printed why)."""
    if config.pdp.engine.type != "embedded":
        return ""
    from pdp.engine.bundle import BundleError, load_bundle
    from pdp.engine.opa import PolicyLoadError, evaluate, new_engine

    settings = config.pdp.engine
    try:
        if settings.bundle:  # a bundle file or URL, verified as the PDP will verify it
            import asyncio

            from pdp.engine.policy_source import source_for

            bundle = asyncio.run(_load_source(source_for(settings)))
        else:
            bundle = load_bundle(settings.policies).without_tests()
        engine = new_engine(bundle)
        evaluate(engine, {"command": {"kind": "session.open"}})
    except (BundleError, PolicyLoadError) as exc:
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        where = settings.bundle or settings.policies
        print(f"portcullis: policy {where}: {detail}", file=sys.stderr)
        return None
    return str(bundle.revision)


async def _load_source(source: Any) -> Any:
    try:
        return await source.load()
    finally:
        await source.close()


# -- status ---------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from pdp.cli import _config

    config = _config(args)
    address = args.pdp or config.pdp.address or config.pdp.listen
    report: dict[str, Any] = {"pdp": {"address": address}}
    credential = _local_credential(config.pdp.proxy_credential_file)
    reachable = asyncio.run(_ask_pdp(address, report, credential))
    if config.pdp.http_listen and reachable:
        report["pdp"].update(_http_status(config.pdp.http_listen, credential))
    report["store"] = asyncio.run(_store_head(config))
    report["connections"] = _connections(config, report["pdp"].get("sessions_by_connection"))
    report["insecure"] = insecure_settings(config)
    if args.format == "json":
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(_render(report))
    return EXIT_OK if reachable else EXIT_BAD


async def _ask_pdp(address: str, report: dict[str, Any], credential: str = "") -> bool:
    """Health and ServerInfo of the PDP at address; ServerInfo answers a proxy only, so
    it is asked with the local proxy credential (pdp.proxy_credential_file)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
    from portcullis.wire import CREDENTIAL_METADATA

    try:
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            checked = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            info = await pdp_pb2_grpc.DecisionServiceStub(channel).ServerInfo(
                pdp_pb2.ServerInfoRequest(),
                timeout=5,
                metadata=((CREDENTIAL_METADATA, credential),) if credential else None,
            )
    except grpc.aio.AioRpcError as exc:
        report["pdp"].update(reachable=False, error=exc.details() or exc.code().name)
        return False
    report["pdp"].update(
        reachable=True,
        health=health_pb2.HealthCheckResponse.ServingStatus.Name(checked.status),
        policy_revision=info.policy_revision,
        engine=info.engine,
        engine_version=info.engine_version,
        version=info.version,
    )
    return True


def _local_credential(path: Any) -> str:
    """The proxy credential the PDP writes for this host (0600): /v1/status asks for one."""
    try:
        return str(Path(path).read_text().strip())
    except (OSError, TypeError):
        return ""


def _http_status(listen: str, credential: str = "") -> dict[str, Any]:
    import urllib.error
    import urllib.request

    from portcullis.wire import CREDENTIAL_METADATA

    url = f"http://{listen}/v1/status"
    headers = {CREDENTIAL_METADATA: credential} if credential else {}
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http://)
            body = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        return {"http_error": f"{url}: {exc}"}
    return {k: v for k, v in body.items() if k != "policy_revision"}


async def _store_head(config: Any) -> dict[str, Any]:
    from typing import cast

    from pdp.store import AuditStore, StoreUnavailable, open_store

    settings = config.pdp.store
    out: dict[str, Any] = {"type": settings.type}
    if settings.type == "sqlite":
        out["path"] = str(settings.path)
        if not settings.path.is_file():
            out["error"] = "no audit store yet"
            return out
    store = cast(AuditStore, open_store(settings, timeout=10.0))
    try:
        await store.start()
        seq, digest = await store.head()
        out.update(records=seq, chain_head=digest)
    except StoreUnavailable as exc:
        out["error"] = str(exc)
    finally:
        await store.close()
    return out


def _connections(config: Any, sessions: dict[str, int] | None) -> list[dict[str, Any]]:
    from proxies.launcher import served

    serving = {c.name for c in served(config.connections)}
    return [
        {
            "name": c.name,
            "type": c.type,
            "listen": c.listen,
            "served": c.name in serving,
            "open_sessions": (sessions or {}).get(c.name, 0) if sessions is not None else None,
            **_host_key(c),
        }
        for c in config.connections
    ]


def _host_key(connection: Any) -> dict[str, Any]:
    """An SSH proxy's host key fingerprint, as clients see it (once the proxy made it)."""
    if connection.type != "ssh":
        return {}
    from proxies.ssh.keys import kept_fingerprint

    return {"host_key": kept_fingerprint(connection) or "not generated yet"}


def insecure_settings(config: Any) -> list[str]:
    """What the configuration opted out of knowingly (each an `insecure_*` key): shown by
    `status` and `config check` as long as it is set, and logged at every start."""
    from pdp.domain.identity import idp_in_clear
    from portcullis.config import FORWARD_CLEARTEXT_OPT_OUT, IDP_CLEARTEXT_OPT_OUT
    from portcullis.config_keyfiles import KEY_FILES_OPT_OUT
    from portcullis.network_path import cleartext_remote

    said = list(config.warnings)
    url = idp_in_clear(config.identity)
    if url and config.identity.insecure_plain_http_to_remote_idp:
        said.append(
            f"INSECURE identity.{IDP_CLEARTEXT_OPT_OUT}: the identity provider's keys come"
            f" from {url}, plain HTTP to another host (anyone on the path can sign any identity)"
        )
    if config.pdp.insecure_readable_key_files:
        said.append(
            f"INSECURE pdp.{KEY_FILES_OPT_OUT}: private key files other users may read are"
            " used (each is named in the log as it is read)"
        )
    for i, sink in enumerate(config.forwarding):
        if sink.insecure_plain_http_to_remote and cleartext_remote(sink.url):
            said.append(
                f"INSECURE forwarding[{i}].{FORWARD_CLEARTEXT_OPT_OUT}: audit records go to"
                f" {sink.url} in plain HTTP to another host"
            )
    return said


def _render(report: dict[str, Any]) -> str:
    pdp = report["pdp"]
    if pdp.get("reachable"):
        lines = [
            f"PDP {pdp['address']}: {pdp['health']}, policy {pdp['policy_revision']} "
            f"({pdp['engine']}, {pdp['engine_version']})"
        ]
        if pdp.get("policy_reload_error"):
            lines.append(f"  last policy reload FAILED: {pdp['policy_reload_error']}")
        if pdp.get("http_error"):
            lines.append(f"  HTTP status unavailable: {pdp['http_error']}")
    else:
        lines = [f"PDP {pdp['address']}: NOT REACHABLE ({pdp.get('error', '')})"]
    store = report["store"]
    if "error" in store:
        lines.append(f"store {store['type']}: {store['error']}")
    else:
        lines.append(
            f"store {store['type']}: {store['records']} records, chain head {store['chain_head']}"
        )
    for c in report["connections"]:
        if not c["served"]:
            state = "not served (no such proxy in this build)"
        elif c["open_sessions"] is None:
            state = "served (sessions: set pdp.http_listen to see them)"
        else:
            state = f"served, {c['open_sessions']} open sessions"
        if "host_key" in c:
            state += f", host key {c['host_key']}"
        lines.append(f"proxy {c['name']} ({c['type']}) {c['listen']}: {state}")
    lines.extend(f"WARNING: {w}" for w in report.get("insecure", ()))
    return "\n".join(lines)
