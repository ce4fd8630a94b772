"""Loads and validates portcullis.yaml — the one configuration file of DESIGN.md.

Owns: `${NAME}` environment expansion (a missing variable is an error), typed settings
for every part, and error messages that name the offending key. It does no IO beyond
reading the file and the environment; nothing here starts a server.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from portcullis import protocols
from portcullis.config_keyfiles import KEY_FILES_OPT_OUT, exposed_inline_secrets
from portcullis.network_path import cleartext_remote

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# `${NAME}` is not valid inside a YAML flow mapping ({password: ${X}}), yet DESIGN.md's
# example writes it there; before parsing, each reference becomes a plain-scalar-safe
# placeholder, expanded after parsing (so a value's own characters never reach YAML).
_PLACEHOLDER = re.compile(r"__portcullis_env_([0-9a-f]+)__")


def _protect_env_refs(text: str) -> str:
    return _ENV_REF.sub(lambda m: f"__portcullis_env_{m.group(1).encode().hex()}__", text)


class ConfigError(Exception):
    """A configuration problem; the message names the key and what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"configuration error at {key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class EngineSettings:
    type: str = "embedded"  # embedded | remote
    policies: Path = Path("rego")
    url: str = ""  # remote: OPA server base URL
    workers: int = 0  # embedded: evaluation worker processes; 0 means one per core
    # deadline for one evaluation, its wait for a free worker included: the shipped
    # policy takes ~1 ms of CPU, but a 2-core host shared with its proxies and database
    # can hold a runnable worker off the CPU for hundreds of ms (a spurious deny); under
    # the proxies' 2 s call deadline, so an overrun is still the PDP's own deny
    timeout_ms: int = 1000
    reload: bool = True  # embedded: watch the policy directory and hot-reload
    # embedded: an OPA bundle to load instead of `policies` — a .tar.gz file (watched like
    # the directory) or an http(s) URL polled every poll_seconds with If-None-Match
    bundle: str = ""
    poll_seconds: float = 10.0
    verification: BundleVerification | None = None  # set: the bundle must be signed


@dataclass(frozen=True)
class BundleVerification:
    """pdp.engine.verification: the key a bundle's .signatures.json must verify with."""

    key_file: Path
    algorithm: str = "RS256"  # RS256 (PEM public key) or HS256 (the shared secret's file)
    key_id: str = ""
    scope: str = ""


@dataclass(frozen=True)
class StoreSettings:
    type: str = "sqlite"  # sqlite | postgres
    path: Path = Path("var/portcullis.db")
    dsn: str = ""
    # sqlite: "full" syncs the WAL to disk in every commit (a decision survives a power
    # cut); "normal" leaves that to checkpoints (it survives a PDP crash, and the chain
    # stays whole, but a power cut can lose the last commits) and commits on the event
    # loop's thread without a thread hop — SQLite's recommended WAL setting
    synchronous: str = "full"


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None  # set → mTLS: proxies must present a certificate


@dataclass(frozen=True)
class PDPSettings:
    listen: str = "127.0.0.1:7000"
    engine: EngineSettings = field(default_factory=EngineSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    signing_key: Path = Path("var/signing.key")
    http_listen: str = ""
    tls: TLSSettings | None = None
    # how proxies reach this PDP when it listens on 0.0.0.0 or behind a name
    address: str = ""
    # a session whose proxy sends nothing (no command, no heartbeat) this long has lost its
    # proxy and is closed as ended abnormally
    session_timeout_seconds: int = 30
    # answer a command from an earlier evaluation in the same session when the policy
    # declared that verdict reusable (cache_ttl_seconds / cache_key); every decision is
    # still recorded, naming the decision whose evaluation it reused
    reuse_evaluations: bool = True
    # the secret behind the proxy credentials the PDP issues (pdp/api/proxy_auth.py), and where
    # it writes one for every configured connection at start (read by `portcullis proxy`)
    proxy_key: Path = Path("var/proxy.key")
    proxy_credential_file: Path = Path("var/proxy.credential")
    # several PDP processes on one host listen on the same gRPC and HTTP ports
    # (SO_REUSEPORT; replicas sharing one PostgreSQL store); off: a taken port is an error
    reuse_port: bool = False
    # how many sessions one identity may open a minute (a bucket refilling at that rate;
    # pdp/domain/open_rate.py): past it OpenSession is refused, RESOURCE_EXHAUSTED
    session_opens_per_minute: int = 600
    # KEY_FILES_OPT_OUT: private key files others may read are used, with a warning each
    # time (portcullis.config_keyfiles); off: such a file stops start-up
    insecure_readable_key_files: bool = False


@dataclass(frozen=True)
class ProxyPDPSettings:
    """proxies.pdp: how a proxy reaches the PDP and proves it is a proxy."""

    address: str = ""  # default: pdp.address, else pdp.listen
    ca_file: Path | None = None  # set → TLS to the PDP, its certificate checked against this CA
    cert_file: Path | None = None  # with key_file: the proxy's certificate (mTLS)
    key_file: Path | None = None
    # the proxy credential the PDP wrote (default: pdp.proxy_credential_file); not read when
    # a certificate is configured
    credential_file: Path | None = None
    # a credential handed over in memory by `portcullis up` (never read from the file)
    credential: str = field(default="", repr=False)
    # a proxy refuses to send its credential (and clients' tokens) without TLS to a PDP
    # beyond this host (proxies.runtime.pdp_auth) unless this says it knowingly does
    insecure_plaintext_to_remote_pdp: bool = False


@dataclass(frozen=True)
class ProxiesSettings:
    pdp: ProxyPDPSettings = field(default_factory=ProxyPDPSettings)
    # on SIGTERM: how long in-flight commands may run before every session is ended with
    # its protocol's shutdown message (proxies/runtime/drain.py)
    drain_seconds: float = 25.0


@dataclass(frozen=True)
class LoggingSettings:
    """logging: how every process writes its log lines (portcullis.logs)."""

    format: str = "text"  # text | json
    level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True)
class IdentitySettings:
    dev: bool = False
    issuer: str = ""
    audience: str = "portcullis"
    jwks_url: str = ""
    jwks_file: Path | None = None
    groups_claim: str = "groups"
    shared_secret: str = ""  # HS256 only when configured explicitly
    algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
    # clock skew allowed on exp/nbf/iat, the same at session open and during the session
    leeway_seconds: int = 2
    dev_key: Path = Path("var/dev-issuer.key")
    # other clients of the issuer whose tokens (`azp`) for our audience open sessions; by
    # default none: OIDC Core 3.1.3.7, azp must be our client id (pdp.domain.identity)
    authorized_parties: tuple[str, ...] = ()
    # IDP_CLEARTEXT_OPT_OUT: the issuer's discovery and keys (and the console's sign-in
    # endpoints) may be plain HTTP to another host, on a closed network; warned of at every
    # start and shown by `portcullis status` / `config check`. Off: refused at start
    insecure_plain_http_to_remote_idp: bool = False
    # pdp.insecure_readable_key_files, for the dev issuer's key (not a key of `identity`)
    readable_key_files: bool = False
    # claims a session.open record keeps in the clear besides the registered ones and the
    # groups claim (pdp.domain.claims): those a policy decides on, such as a row filter's
    # tenant claim; every other claim is recorded as a commitment
    evidence_claims: tuple[str, ...] = ()


# the key of `identity` that lets an IdP be reached in plain HTTP off this host
IDP_CLEARTEXT_OPT_OUT = "insecure_plain_http_to_remote_idp"


@dataclass(frozen=True)
class VaultSettings:
    addr: str
    auth: dict[str, Any]  # `${NAME}` references expanded only by resolved()
    secrets_resolved: bool = True
    # the configuration file's directory: a relative `*_file` or `ca_cert` of `auth` is
    # read from there, as every other path of the file is, not from the working directory
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        """A path given in `auth`, resolved against the configuration's directory."""
        return _path(self.base_dir, value)

    def resolved(self, env: Mapping[str, str] | None = None) -> VaultSettings:
        if self.secrets_resolved:
            return self
        return replace(self, auth=expand_env(self.auth, "vault.auth", env), secrets_resolved=True)


@dataclass(frozen=True)
class ApprovalSettings:
    timeout_seconds: float = 120  # fractional seconds accepted (a test waits 0.5 s)
    webhook: str | None = None
    # the `aud` an approver's token must carry at the approval APIs ("": identity.audience).
    # Proxies receive every client's token, so with one audience a compromised proxy can
    # replay an approver's session token to approve; a separate one it never sees.
    audience: str = ""


@dataclass(frozen=True)
class ConnectionSettings:
    name: str
    type: str
    listen: str
    upstream: str
    zone: str = ""
    database: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # protocol-specific, validated
    # `credentials` keep their `${NAME}` references until the proxy that needs them starts
    # (resolve_secrets): reading evidence never needs an upstream secret
    key: str = ""  # where it is in the file, e.g. connections[0]
    secrets_resolved: bool = True
    # which of the connection's proxy processes serves it here (option `workers`): not
    # read from the file; 0 in the process that starts the others
    worker: int = 0
    # the abstract socket names of the workers' cancel routes, drawn at random by worker 0
    # and handed to the others over their stdin (proxies.runtime.workers): not read from
    # the file
    cancel_routes: tuple[str, ...] = ()
    # host:port of the proxy's /metrics, /healthz, /readyz ("" none); worker i: port + i
    metrics_listen: str = ""

    def resolved(self, env: Mapping[str, str] | None = None) -> ConnectionSettings:
        """This connection with the `${NAME}` references of its credentials expanded; a
        variable that is not set is a ConfigError naming the key."""
        if self.secrets_resolved:
            return self
        key = f"{self.key or 'connection ' + self.name}.credentials"
        credentials = expand_env(self.credentials, key, env)
        return replace(self, credentials=credentials, secrets_resolved=True)


FORWARDER_TYPES = ("syslog", "http")


@dataclass(frozen=True)
class ForwarderSettings:
    """One SIEM sink that audit records are forwarded to (pdp/forwarding/)."""

    type: str  # syslog | http
    name: str  # names the sink in logs and its delivery state file
    state_file: Path  # last delivered audit seq (pdp/forwarding/spool.py)
    address: str = ""  # syslog: host:port (RFC 5424 over TCP, RFC 6587 octet counting)
    url: str = ""  # http: the endpoint that receives JSON batches by POST
    app_name: str = "portcullis"  # syslog APP-NAME
    hostname: str = ""  # syslog HOSTNAME; empty means this machine's name
    facility: int = 13  # syslog facility; 13 is "log audit"
    headers: dict[str, str] = field(default_factory=dict)  # http: e.g. Authorization
    kinds: tuple[str, ...] = ()  # only these record kinds; empty means every record
    batch_size: int = 100
    timeout_seconds: int = 10
    retry_max_seconds: int = 30
    # FORWARD_CLEARTEXT_OPT_OUT: an http:// url to another host is used (a closed network),
    # with a warning at every start; off: refused at start
    insecure_plain_http_to_remote: bool = False


# the key of a forwarder that lets it post evidence in plain HTTP off this host
FORWARD_CLEARTEXT_OPT_OUT = "insecure_plain_http_to_remote"


@dataclass(frozen=True)
class Config:
    pdp: PDPSettings = field(default_factory=PDPSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    vault: VaultSettings | None = None
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    connections: tuple[ConnectionSettings, ...] = ()
    base_dir: Path = Path(".")
    forwarding: tuple[ForwarderSettings, ...] = ()
    # masking.hash_key: the deployment's secret behind the `hash` strategy, so hashed
    # values join across proxies and restarts; kept as written (`${NAME}`) until a proxy
    # starts (resolve_secrets), "" when not configured
    masking_hash_key: str = ""
    masking_hash_key_resolved: bool = True
    proxies: ProxiesSettings = field(default_factory=ProxiesSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # the file it was read from (None: built in code): what a proxy's other worker
    # processes read again
    path: Path | None = None
    # what loading it found risky without refusing it (portcullis.config_keyfiles: inline
    # secrets in a file others may read): logged at every start, shown by `status`
    warnings: tuple[str, ...] = ()

    def connection(self, name: str) -> ConnectionSettings | None:
        return next((c for c in self.connections if c.name == name), None)


def resolve_secrets(
    config: Config,
    connections: tuple[ConnectionSettings, ...] | list[ConnectionSettings] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Config, list[ConnectionSettings]]:
    """The secrets a proxy needs to start: these connections' credentials (default: all of
    them) and, when one of them uses Vault, the Vault login. Raises ConfigError naming the
    key of a `${NAME}` whose variable is not set."""
    chosen = list(config.connections if connections is None else connections)
    resolved = [c.resolved(env) for c in chosen]
    vault = config.vault
    if vault is not None and any(c.credentials.get("provider") == "vault" for c in resolved):
        vault = vault.resolved(env)
    by_name = {c.name: c for c in resolved}
    everyone = tuple(by_name.get(c.name, c) for c in config.connections)
    hash_key = config.masking_hash_key
    if not config.masking_hash_key_resolved:
        hash_key = str(expand_env(hash_key, "masking.hash_key", env))
        if len(hash_key) < 16:
            raise ConfigError("masking.hash_key", "must be a string of at least 16 characters")
    config = replace(config, masking_hash_key=hash_key, masking_hash_key_resolved=True)
    return replace(config, vault=vault, connections=everyone), resolved


def expand_env(value: Any, key: str = "", env: Mapping[str, str] | None = None) -> Any:
    """Replace every `${NAME}` in strings of a YAML tree; a missing variable is an error."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in environ:
                raise ConfigError(key or "(root)", f"environment variable {name} is not set")
            return environ[name]

        value = _PLACEHOLDER.sub(lambda m: "${" + bytes.fromhex(m.group(1)).decode() + "}", value)
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, f"{key}.{k}" if key else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{key}[{i}]", env) for i, v in enumerate(value)]
    return value


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file; raises ConfigError naming the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(_protect_env_refs(text)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    config = parse_config(raw, base_dir=path.resolve().parent, env=env)
    exposed = exposed_inline_secrets(path, raw)
    return replace(config, path=path.resolve(), warnings=(exposed,) if exposed else ())


def parse_config(
    raw: Any, base_dir: Path = Path("."), env: Mapping[str, str] | None = None
) -> Config:
    """Build a Config from an already-parsed YAML tree."""
    if not isinstance(raw, dict):
        raise ConfigError("(root)", "must be a mapping")
    _known(
        raw,
        "(root)",
        {
            "pdp",
            "identity",
            "vault",
            "approvals",
            "connections",
            "forwarding",
            "masking",
            "proxies",
            "logging",
        },
    )
    raw, deferred = _defer_secrets(raw)
    raw = expand_env(raw, env=env)
    pdp = _pdp(_section(raw, "pdp"), base_dir)
    identity = _identity(_section(raw, "identity"), base_dir)
    config = Config(
        pdp=pdp,
        identity=replace(identity, readable_key_files=pdp.insecure_readable_key_files),
        vault=_vault(raw.get("vault"), deferred.get("vault"), base_dir),
        approvals=_approvals(_section(raw, "approvals")),
        connections=_connections(raw.get("connections") or [], deferred, base_dir),
        base_dir=base_dir,
        forwarding=_forwarding(raw.get("forwarding") or [], base_dir),
        proxies=_proxies(_section(raw, "proxies"), base_dir),
        logging=_logging(_section(raw, "logging")),
    )
    if config.approvals.audience and config.approvals.audience == config.identity.audience:
        raise ConfigError(
            "approvals.audience", "must differ from identity.audience (or be left out)"
        )
    masking = _section(raw, "masking")
    _known(masking, "masking", {"hash_key"})
    if "hash_key" in deferred:
        key = deferred["hash_key"]
        if not isinstance(key, str) or (len(key) < 16 and not _has_env_refs(key)):
            raise ConfigError("masking.hash_key", "must be a string of at least 16 characters")
        config = replace(
            config, masking_hash_key=key, masking_hash_key_resolved=not _has_env_refs(key)
        )
    return config


def _unprotect(value: Any) -> Any:
    """A YAML tree with each `${NAME}` placeholder turned back into its text, unexpanded."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: "${" + bytes.fromhex(m.group(1)).decode() + "}", value)
    if isinstance(value, dict):
        return {k: _unprotect(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unprotect(v) for v in value]
    return value


def _defer_secrets(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Take out of the tree what only a proxy needs and may hold secrets: each connection's
    `credentials` and Vault's `auth`; they are expanded when that proxy starts."""
    deferred: dict[str, Any] = {}
    raw = dict(raw)
    connections = raw.get("connections")
    if isinstance(connections, list):
        copies = []
        for i, item in enumerate(connections):
            if isinstance(item, dict) and "credentials" in item:
                item = dict(item)
                deferred[f"connections[{i}]"] = _unprotect(item.pop("credentials"))
            copies.append(item)
        raw["connections"] = copies
    masking = raw.get("masking")
    if isinstance(masking, dict) and "hash_key" in masking:
        masking = dict(masking)
        deferred["hash_key"] = _unprotect(masking.pop("hash_key"))
        raw["masking"] = masking
    vault = raw.get("vault")
    if isinstance(vault, dict) and "auth" in vault:
        vault = dict(vault)
        deferred["vault"] = _unprotect(vault.pop("auth"))
        raw["vault"] = vault
    return raw, deferred


def _has_env_refs(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_ENV_REF.search(value))
    if isinstance(value, dict):
        return any(_has_env_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_env_refs(v) for v in value)
    return False


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a mapping")
    return value


def _known(raw: dict[str, Any], key: str, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}" if key != "(root)" else unknown[0], "unknown key")


def _str(raw: dict[str, Any], key: str, name: str, default: str = "") -> str:
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{key}.{name}", "must be a string")
    return str(value)


def _int(raw: dict[str, Any], key: str, name: str, default: int, minimum: int = 0) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}.{name}", "must be an integer")
    if value < minimum:
        raise ConfigError(f"{key}.{name}", f"must be at least {minimum}")
    return value


def _seconds(raw: dict[str, Any], key: str, name: str, default: float) -> float:
    """A positive, finite number of seconds, whole or fractional (YAML `0.5`, `2`)."""
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}.{name}", "must be a number of seconds (2, 0.5)")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}.{name}", "must be a finite number of seconds above 0")
    return value


def _bool(raw: dict[str, Any], key: str, name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}.{name}", "must be true or false")
    return value


def _path(base_dir: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base_dir / p


def _address(key: str, value: str) -> str:
    if value.startswith("unix:"):
        if len(value) <= len("unix:"):
            raise ConfigError(key, "unix: needs a socket path")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"{value!r} is not host:port")
    return value


def _pdp(raw: dict[str, Any], base_dir: Path) -> PDPSettings:
    _known(
        raw,
        "pdp",
        {
            "listen",
            "engine",
            "store",
            "signing_key",
            "http_listen",
            "tls",
            "address",
            "session_timeout_seconds",
            "reuse_evaluations",
            "proxy_key",
            "proxy_credential_file",
            "reuse_port",
            "session_opens_per_minute",
            KEY_FILES_OPT_OUT,
        },
    )
    engine_raw = _section(raw, "engine") if "engine" in raw else {}
    store_raw = _section(raw, "store") if "store" in raw else {}
    return PDPSettings(
        listen=_address("pdp.listen", _str(raw, "pdp", "listen", "127.0.0.1:7000")),
        engine=_engine(engine_raw, base_dir),
        store=_store(store_raw, base_dir),
        signing_key=_path(base_dir, _str(raw, "pdp", "signing_key", "var/signing.key")),
        http_listen=(
            _address("pdp.http_listen", _str(raw, "pdp", "http_listen"))
            if raw.get("http_listen")
            else ""
        ),
        tls=_tls(raw["tls"], base_dir) if raw.get("tls") else None,
        address=_str(raw, "pdp", "address"),
        session_timeout_seconds=_int(raw, "pdp", "session_timeout_seconds", 30, minimum=1),
        reuse_evaluations=_bool(raw, "pdp", "reuse_evaluations", True),
        proxy_key=_path(base_dir, _str(raw, "pdp", "proxy_key", "var/proxy.key")),
        proxy_credential_file=_path(
            base_dir, _str(raw, "pdp", "proxy_credential_file", "var/proxy.credential")
        ),
        reuse_port=_bool(raw, "pdp", "reuse_port", False),
        insecure_readable_key_files=_bool(raw, "pdp", KEY_FILES_OPT_OUT, False),
        session_opens_per_minute=_int(raw, "pdp", "session_opens_per_minute", 600, minimum=1),
    )


LOG_LEVELS = ("debug", "info", "warning", "error")


def _logging(raw: dict[str, Any]) -> LoggingSettings:
    _known(raw, "logging", {"format", "level"})
    kind = _str(raw, "logging", "format", "text")
    if kind not in ("text", "json"):
        raise ConfigError("logging.format", f"{kind!r} is not one of text, json")
    level = _str(raw, "logging", "level", "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError("logging.level", f"{level!r} is not one of {', '.join(LOG_LEVELS)}")
    return LoggingSettings(format=kind, level=level)


def _proxies(raw: dict[str, Any], base_dir: Path) -> ProxiesSettings:
    _known(raw, "proxies", {"pdp", "drain_seconds"})
    drain = raw.get("drain_seconds", ProxiesSettings.drain_seconds)
    if isinstance(drain, bool) or not isinstance(drain, int | float) or drain < 0:
        raise ConfigError("proxies.drain_seconds", "must be a number of seconds, 0 or more")
    key = "proxies.pdp"
    pdp = _section(raw, "pdp") if "pdp" in raw else {}
    _known(
        pdp,
        key,
        {"address", "ca_file", "cert_file", "key_file", "credential_file"}
        | {"insecure_plaintext_to_remote_pdp"},
    )
    insecure = pdp.get("insecure_plaintext_to_remote_pdp", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{key}.insecure_plaintext_to_remote_pdp", "must be true or false")
    files: dict[str, Path | None] = {}
    for name in ("ca_file", "cert_file", "key_file", "credential_file"):
        value = _str(pdp, key, name)
        path = _path(base_dir, value) if value else None
        if path is not None and name != "credential_file" and not path.is_file():
            raise ConfigError(f"{key}.{name}", f"{path} does not exist")
        files[name] = path
    if bool(files["cert_file"]) != bool(files["key_file"]):
        raise ConfigError(key, "a proxy certificate needs both cert_file and key_file")
    address = _str(pdp, key, "address")
    return ProxiesSettings(
        ProxyPDPSettings(
            address=_address(f"{key}.address", address) if address else "",
            ca_file=files["ca_file"],
            cert_file=files["cert_file"],
            key_file=files["key_file"],
            credential_file=files["credential_file"],
            insecure_plaintext_to_remote_pdp=insecure,
        ),
        drain_seconds=float(drain),
    )


def _engine(raw: dict[str, Any], base_dir: Path) -> EngineSettings:
    key = "pdp.engine"
    _known(
        raw,
        key,
        {
            "type",
            "policies",
            "url",
            "workers",
            "timeout_ms",
            "reload",
            "bundle",
            "poll_seconds",
            "verification",
        },
    )
    kind = _str(raw, key, "type", "embedded")
    if kind not in ("embedded", "remote"):
        raise ConfigError(f"{key}.type", f"{kind!r} is not one of embedded, remote")
    url = _str(raw, key, "url")
    if kind == "remote" and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{key}.url", "the remote engine needs an http(s) URL of the OPA server")
    policies = _path(base_dir, _str(raw, key, "policies", "rego"))
    bundle = _str(raw, key, "bundle")
    if bundle and kind != "embedded":
        raise ConfigError(f"{key}.bundle", "only the embedded engine loads bundles itself")
    if bundle and not bundle.startswith(("http://", "https://")):
        bundle = str(_path(base_dir, bundle))
        if not Path(bundle).is_file():
            raise ConfigError(f"{key}.bundle", f"{bundle} is not a file")
    if kind == "embedded" and not bundle and not policies.is_dir():
        raise ConfigError(f"{key}.policies", f"{policies} is not a directory")
    poll = raw.get("poll_seconds", 10.0)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or poll <= 0:
        raise ConfigError(f"{key}.poll_seconds", "must be a positive number of seconds")
    return EngineSettings(
        type=kind,
        policies=policies,
        url=url.rstrip("/"),
        workers=_int(raw, key, "workers", 0),
        timeout_ms=_int(raw, key, "timeout_ms", EngineSettings.timeout_ms, minimum=1),
        reload=_bool(raw, key, "reload", True),
        bundle=bundle,
        poll_seconds=float(poll),
        verification=_verification(raw, base_dir) if "verification" in raw else None,
    )


def _verification(raw: dict[str, Any], base_dir: Path) -> BundleVerification:
    key = "pdp.engine.verification"
    if not raw.get("bundle"):
        raise ConfigError(key, "verifies a bundle: set pdp.engine.bundle")
    section = _section(raw, "verification")
    _known(section, key, {"key_file", "algorithm", "key_id", "scope"})
    key_file = _path(base_dir, _str(section, key, "key_file"))
    if not _str(section, key, "key_file") or not key_file.is_file():
        raise ConfigError(f"{key}.key_file", f"{key_file} is not a file")
    algorithm = _str(section, key, "algorithm", "RS256")
    if algorithm not in ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "HS256", "HS512"):
        raise ConfigError(f"{key}.algorithm", f"{algorithm!r} is not an algorithm OPA signs with")
    return BundleVerification(
        key_file=key_file,
        algorithm=algorithm,
        key_id=_str(section, key, "key_id"),
        scope=_str(section, key, "scope"),
    )


def _store(raw: dict[str, Any], base_dir: Path) -> StoreSettings:
    key = "pdp.store"
    _known(raw, key, {"type", "path", "dsn", "synchronous"})
    kind = _str(raw, key, "type", "sqlite")
    if kind not in ("sqlite", "postgres"):
        raise ConfigError(f"{key}.type", f"{kind!r} is not one of sqlite, postgres")
    synchronous = _str(raw, key, "synchronous", "full")
    if synchronous not in ("full", "normal"):
        raise ConfigError(f"{key}.synchronous", f"{synchronous!r} is not one of full, normal")
    if synchronous != "full" and kind != "sqlite":
        raise ConfigError(f"{key}.synchronous", "applies to the sqlite store only")
    dsn = _str(raw, key, "dsn")
    if kind == "postgres" and not dsn:
        raise ConfigError(f"{key}.dsn", "the postgres store needs a DSN")
    return StoreSettings(
        type=kind,
        path=_path(base_dir, _str(raw, key, "path", "var/portcullis.db")),
        dsn=dsn,
        synchronous=synchronous,
    )


def _tls(raw: Any, base_dir: Path) -> TLSSettings:
    key = "pdp.tls"
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping")
    _known(raw, key, {"cert_file", "key_file", "client_ca_file"})
    files: dict[str, Path | None] = {}
    for name in ("cert_file", "key_file", "client_ca_file"):
        value = _str(raw, key, name)
        path = _path(base_dir, value) if value else None
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}.{name}", f"{path} does not exist")
        files[name] = path
    if not files["cert_file"] or not files["key_file"]:
        raise ConfigError(key, "TLS needs both cert_file and key_file")
    return TLSSettings(**files)


def _identity(raw: dict[str, Any], base_dir: Path) -> IdentitySettings:
    key = "identity"
    _known(
        raw,
        key,
        {
            "dev",
            "issuer",
            "audience",
            "jwks_url",
            "jwks_file",
            "groups_claim",
            "shared_secret",
            "algorithms",
            "leeway_seconds",
            "dev_key",
            "authorized_parties",
            "evidence_claims",
            IDP_CLEARTEXT_OPT_OUT,
        },
    )
    dev = _bool(raw, key, "dev", False)
    issuer = _str(raw, key, "issuer")
    if not dev and not issuer:
        raise ConfigError(
            f"{key}.issuer", "set an OIDC issuer (or identity.dev: true for local use)"
        )
    algorithms = raw.get("algorithms")
    if algorithms is not None:
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise ConfigError(f"{key}.algorithms", "must be a list of JWS algorithm names")
        if any(a.lower() == "none" for a in algorithms):
            raise ConfigError(f"{key}.algorithms", "'none' is never accepted")
    jwks_file = _str(raw, key, "jwks_file")
    audience = _str(raw, key, "audience", "portcullis")
    if not audience.strip() or audience != audience.strip():
        # every token must be issued for this gateway: an empty audience accepts a token
        # whose aud is "", which no issuer means for anyone
        raise ConfigError(f"{key}.audience", "must be a non-empty name without spaces around it")
    opted_out = _bool(raw, key, IDP_CLEARTEXT_OPT_OUT, False)
    jwks_url = _str(raw, key, "jwks_url")
    fetched = "" if jwks_file else ("jwks_url" if jwks_url else "issuer")
    if fetched and not opted_out and cleartext_remote(jwks_url or issuer):
        # (pdp.domain.identity refuses it as well, for settings made without this file)
        raise ConfigError(
            f"{key}.{fetched}",
            f"{jwks_url or issuer} is plain HTTP to another host: whoever answers on the"
            " network path would publish keys of their own and sign any identity; use"
            f" https:// (or, on a closed network and knowing that, set"
            f" {key}.{IDP_CLEARTEXT_OPT_OUT}: true)",
        )
    defaults = IdentitySettings()
    return IdentitySettings(
        dev=dev,
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        jwks_file=_path(base_dir, jwks_file) if jwks_file else None,
        groups_claim=_str(raw, key, "groups_claim", "groups"),
        shared_secret=_str(raw, key, "shared_secret"),
        algorithms=tuple(algorithms) if algorithms else defaults.algorithms,
        leeway_seconds=_leeway(raw, key),
        dev_key=_path(base_dir, _str(raw, key, "dev_key", "var/dev-issuer.key")),
        authorized_parties=_parties(raw.get("authorized_parties"), f"{key}.authorized_parties"),
        insecure_plain_http_to_remote_idp=opted_out,
        evidence_claims=_claim_names(raw.get("evidence_claims"), f"{key}.evidence_claims"),
    )


def _claim_names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(key, "must be a list of claim names")
    return tuple(value)


def _parties(value: Any, key: str) -> tuple[str, ...]:
    """identity.authorized_parties: client ids (a list of non-empty strings), or none."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(key, "must be a list of client ids (the azp other clients' tokens name)")
    return tuple(value)


MAX_LEEWAY_SECONDS = 60


def _leeway(raw: dict[str, Any], key: str) -> int:
    """Clock-skew leeway for token times: small, or an expired token opens sessions."""
    leeway = _int(raw, key, "leeway_seconds", IdentitySettings.leeway_seconds)
    if leeway > MAX_LEEWAY_SECONDS:
        raise ConfigError(
            f"{key}.leeway_seconds", f"must be at most {MAX_LEEWAY_SECONDS} (clock skew only)"
        )
    return leeway


def _vault(raw: Any, auth: Any, base_dir: Path = Path(".")) -> VaultSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("vault", "must be a mapping")
    _known(raw, "vault", {"addr"})
    addr = _str(raw, "vault", "addr")
    if not addr.startswith(("http://", "https://")):
        raise ConfigError("vault.addr", "must be an http(s) URL")
    auth = auth or {}
    if not isinstance(auth, dict) or auth.get("method") not in ("token", "approle", "jwt"):
        raise ConfigError("vault.auth.method", "must be one of token, approle, jwt")
    return VaultSettings(
        addr=addr.rstrip("/"),
        auth=dict(auth),
        secrets_resolved=not _has_env_refs(auth),
        base_dir=base_dir,
    )


def _approvals(raw: dict[str, Any]) -> ApprovalSettings:
    _known(raw, "approvals", {"timeout_seconds", "webhook", "audience"})
    webhook = raw.get("webhook")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        raise ConfigError("approvals.webhook", "must be an http(s) URL or null")
    return ApprovalSettings(
        timeout_seconds=_seconds(raw, "approvals", "timeout_seconds", 120),
        webhook=webhook,
        audience=_str(raw, "approvals", "audience").strip(),
    )


def _connections(
    raw: Any, deferred: dict[str, Any], base_dir: Path
) -> tuple[ConnectionSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("connections", "must be a list")
    seen: set[str] = set()
    result = []
    for i, item in enumerate(raw):
        key = f"connections[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(key, "must be a mapping")
        name = _str(item, key, "name")
        if not name:
            raise ConfigError(f"{key}.name", "is required")
        if name in seen:
            raise ConfigError(f"{key}.name", f"{name!r} is used twice")
        seen.add(name)
        kind = _str(item, key, "type")
        known = protocols.registered()
        if kind not in known:
            raise ConfigError(f"{key}.type", f"{kind!r} is not one of {', '.join(known)}")
        if not item.get("listen"):
            raise ConfigError(f"{key}.listen", "is required")
        if not item.get("upstream"):
            raise ConfigError(f"{key}.upstream", "is required")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            raise ConfigError(f"{key}.labels", "must be a mapping")
        credentials = deferred.get(key) or {}
        if not isinstance(credentials, dict) or credentials.get("provider") not in (
            "static",
            "vault",
        ):
            raise ConfigError(f"{key}.credentials.provider", "must be one of static, vault")
        fixed = {"name", "type", "listen", "upstream", "zone", "database", "labels", "credentials"}
        fixed.add("metrics_listen")
        metrics = _str(item, key, "metrics_listen")
        if metrics and (metrics.startswith("unix:") or ":" not in metrics):
            raise ConfigError(f"{key}.metrics_listen", f"{metrics!r} is not host:port")
        try:
            options = known[kind].validated(
                {k: v for k, v in item.items() if k not in fixed}, base_dir
            )
        except protocols.OptionError as exc:
            name, problem = exc.args
            raise ConfigError(f"{key}.{name}" if name else key, problem) from None
        # beside the configuration, as every other default path: a proxy started from
        # another directory must find (and deliver) what the last one spooled
        options.setdefault("spool_dir", str(base_dir / "var" / "spool"))
        if kind == "ssh":
            # and the host key it generates and the upstream key it pins: from another
            # directory, the same host key shown to clients and the same upstream trusted
            options.setdefault("host_key_dir", str(base_dir / "var" / "ssh"))
        credentials = _key_file_beside(credentials, base_dir)
        result.append(
            ConnectionSettings(
                name=name,
                type=kind,
                listen=_address(f"{key}.listen", _str(item, key, "listen")),
                upstream=_str(item, key, "upstream"),
                zone=_str(item, key, "zone"),
                database=_str(item, key, "database"),
                labels={str(k): str(v) for k, v in labels.items()},
                credentials=dict(credentials),
                options=options,
                key=key,
                secrets_resolved=not _has_env_refs(credentials),
                metrics_listen=_address(f"{key}.metrics_listen", metrics) if metrics else "",
            )
        )
    return tuple(result)


def _key_file_beside(credentials: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A static credential's `private_key_file`, when written as a relative path, resolved
    against the configuration's folder as every other path (one read from `${NAME}` is
    taken as the environment gives it)."""
    key_file = credentials.get("private_key_file")
    if not isinstance(key_file, str) or not key_file or _has_env_refs(key_file):
        return credentials
    given = Path(key_file)
    if given.is_absolute():
        return credentials
    return {**credentials, "private_key_file": str(base_dir / given)}


def _forwarding(raw: Any, base_dir: Path) -> tuple[ForwarderSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("forwarding", "must be a list")
    seen: set[str] = set()
    result = []
    for i, item in enumerate(raw):
        key = f"forwarding[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(key, "must be a mapping")
        _known(
            item,
            key,
            {
                "type", "name", "address", "url", "app_name", "hostname", "facility",
                "headers", "kinds", "batch_size", "timeout_seconds", "retry_max_seconds",
                "state_file", FORWARD_CLEARTEXT_OPT_OUT,
            },
        )  # fmt: skip
        kind = _str(item, key, "type")
        if kind not in FORWARDER_TYPES:
            raise ConfigError(f"{key}.type", f"{kind!r} is not one of {', '.join(FORWARDER_TYPES)}")
        address = url = ""
        if kind == "syslog":
            if not item.get("address"):
                raise ConfigError(f"{key}.address", "is required: host:port of the receiver")
            address = _address(f"{key}.address", _str(item, key, "address"))
            if address.startswith("unix:"):
                raise ConfigError(f"{key}.address", "syslog forwarding needs host:port (TCP)")
        else:
            url = _str(item, key, "url")
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{key}.url", "must be an http(s) URL")
        name = _str(item, key, "name") or f"{kind}-{address or url}"
        if name in seen:
            raise ConfigError(f"{key}.name", f"{name!r} is used twice")
        seen.add(name)
        app_name = _str(item, key, "app_name", "portcullis")
        if not (0 < len(app_name) <= 48 and all(33 <= ord(c) <= 126 for c in app_name)):
            raise ConfigError(f"{key}.app_name", "must be 1-48 printable ASCII characters")
        hostname = _str(item, key, "hostname")
        if len(hostname) > 255 or not all(33 <= ord(c) <= 126 for c in hostname):
            raise ConfigError(f"{key}.hostname", "must be at most 255 printable ASCII characters")
        facility = _int(item, key, "facility", 13)
        if facility > 23:
            raise ConfigError(f"{key}.facility", "must be a syslog facility, 0 to 23")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise ConfigError(f"{key}.headers", "must be a mapping")
        kinds = item.get("kinds") or []
        if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
            raise ConfigError(f"{key}.kinds", "must be a list of record kinds")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or kind
        state_file = _str(item, key, "state_file") or f"var/forwarding/{safe}.json"
        result.append(
            ForwarderSettings(
                type=kind,
                name=name,
                state_file=_path(base_dir, state_file),
                address=address,
                url=url,
                app_name=app_name,
                hostname=hostname,
                facility=facility,
                headers={str(k): str(v) for k, v in headers.items()},
                kinds=tuple(kinds),
                batch_size=_int(item, key, "batch_size", 100, minimum=1),
                timeout_seconds=_int(item, key, "timeout_seconds", 10, minimum=1),
                retry_max_seconds=_int(item, key, "retry_max_seconds", 30, minimum=1),
                insecure_plain_http_to_remote=_bool(item, key, FORWARD_CLEARTEXT_OPT_OUT, False),
            )
        )
    for i, sink in enumerate(result):  # (after every other problem of the list)
        if cleartext_remote(sink.url) and not sink.insecure_plain_http_to_remote:
            raise ConfigError(
                f"forwarding[{i}].url",
                f"{sink.url} is plain HTTP to another host: every audit record (statements,"
                " identities, the sink's headers) would cross the network in clear, and"
                " whoever answers on the path receives or drops it; use https:// (or, on a"
                f" closed network and knowing that, set forwarding[{i}]."
                f"{FORWARD_CLEARTEXT_OPT_OUT}: true)",
            )
    return tuple(result)
