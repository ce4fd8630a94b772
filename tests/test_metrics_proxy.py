"""A proxy's /metrics after real traffic: psql and asyncpg through a real `portcullis proxy
postgres` process, in front of the machine's PostgreSQL, against a real `portcullis pdp`.

Also the harness the other operations tests use (test_health_proxy, test_drain_proxy,
test_json_logs): `ProxyStack` runs the PDP and a proxy as the processes an operator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psycopg
import pytest
import yaml
from pdp_harness import REPO, free_port
from pg_harness import ADMIN_DSN, scratch_database
from prometheus_client.parser import text_string_to_metric_families
from test_cli import write_config

from pdp.api.proxy_auth import ProxyKey
from portcullis.config import load_config

pytestmark = pytest.mark.integration

START_SECONDS = 90.0


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of a GET; an HTTP error status is an answer too."""
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def eventually(check: Any, what: str, seconds: float = START_SECONDS) -> Any:
    """Poll check() until it returns something truthy (a deadline for a broken build, not
    a measurement: nothing asserts how long it took)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.1)


async def until(check: Any, what: str, seconds: float = START_SECONDS) -> Any:
    """eventually(), for async tests: the event loop runs between looks (check itself
    runs in a thread, so a blocking check stalls no client of the test's)."""
    deadline = time.monotonic() + seconds
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.1)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(page: dict, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    return sum(
        v
        for (n, ls), v in page.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


class ProxyStack:
    """`portcullis pdp` and `portcullis proxy postgres` (python -m proxies) as processes,
    with a scratch database behind the proxy's connection."""

    def __init__(
        self,
        tmp: Path,
        database: tuple[str, str, str] = ("", "", ""),
        *,
        connection: dict[str, Any] | None = None,
        drain_seconds: float = 25.0,
        log_format: str = "text",
        extra_connections: list[dict[str, Any]] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.tmp = tmp
        self.database, self.role, self.password = database
        self.path, self.raw = write_config(tmp)
        self.listen = f"127.0.0.1:{free_port()}"
        self.metrics = f"127.0.0.1:{free_port()}"
        own = {"listen": self.listen, "metrics_listen": self.metrics, **(connection or {})}
        self.raw["connections"] = [
            own
            if connection
            else {
                "name": "orders-db",
                "type": "postgres",
                "listen": self.listen,
                "upstream": "127.0.0.1:5432",
                "database": self.database,
                "metrics_listen": self.metrics,
                "credentials": {
                    "provider": "static",
                    "username": self.role,
                    "password": self.password,
                },
                "spool_dir": str(tmp / "spool"),
                **(options or {}),
            },
            *(extra_connections or []),
        ]
        self.metrics = self.raw["connections"][0].get("metrics_listen", self.metrics)
        self.raw["proxies"] = {"drain_seconds": drain_seconds}
        # the engine's deadline as a test PDP's (tests/pdp_harness.py pdp_raw): with the
        # 250 ms default, a loaded machine denied sessions and statements with "no
        # evaluation worker free within 250 ms" (the one worker busy with another)
        self.raw["pdp"]["engine"].setdefault("timeout_ms", 2000)
        self.raw["logging"] = {"format": log_format}
        self.path.write_text(yaml.safe_dump(self.raw))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS")}
        self.pdp: subprocess.Popen[str] | None = None
        self.proxy: subprocess.Popen[str] | None = None
        self.proxy_log = tmp / "proxy.log"
        self.pdp_log = tmp / "pdp.log"

    # -- processes -----------------------------------------------------------------------

    def start_pdp(self) -> None:
        self.pdp = subprocess.Popen(
            [sys.executable, "-m", "pdp.cli", "pdp", "-c", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=self.pdp_log.open("a"),
            text=True,
            env=self.env,
            cwd=self.tmp,
        )
        channel = grpc.insecure_channel(self.raw["pdp"]["listen"])
        try:
            grpc.channel_ready_future(channel).result(timeout=START_SECONDS)
        finally:
            channel.close()

    def stop_pdp(self) -> None:
        assert self.pdp is not None
        self.pdp.terminate()
        self.pdp.wait(timeout=60)
        self.pdp = None

    def start_proxy(self, kind: str = "postgres") -> None:
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "proxies", kind, "-c", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=self.proxy_log.open("a"),
            text=True,
            env=self.env,
            cwd=self.tmp,
        )
        eventually(lambda: self.ready()[0] == 200, "the proxy says it is ready")

    def sigterm_proxy(self) -> None:
        assert self.proxy is not None
        self.proxy.send_signal(signal.SIGTERM)

    def close(self) -> None:
        for process in (self.proxy, self.pdp):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    # -- what a client and an operator use -----------------------------------------------

    def token(self, groups: str = "readonly", sub: str = "alice@example.com") -> str:
        """The dev token `portcullis token --sub SUB --groups GROUPS -c CONFIG` prints (its
        issuer, key, audience and 1 h), made in this process: a CLI process a token was
        ~0.6 s of CPU. tests/test_cli.py and test_cli_usability.py run the command."""
        from pdp.cli import _LenientEnv
        from pdp.domain.identity import DevIssuer

        config = load_config(self.path, env=_LenientEnv())
        groups_given = [g for g in groups.split(",") if g]
        audience = config.identity.audience or "portcullis"
        return DevIssuer(config.identity).issue(sub, groups_given, 3600, audience)

    def dsn(self, token: str) -> str:
        host, _, port = self.listen.rpartition(":")
        return f"postgresql://agent:{token}@{host}:{port}/{self.database}?sslmode=disable"

    def psql(self, token: str, *sql: str) -> subprocess.CompletedProcess[str]:
        host, _, port = self.listen.rpartition(":")
        args = ["psql", f"host={host} port={port} user=agent dbname={self.database} "
                "sslmode=disable", "-AtX"]  # fmt: skip
        for statement in sql:
            args += ["-c", statement]
        return subprocess.run(
            args, capture_output=True, text=True, env={**self.env, "PGPASSWORD": token}
        )

    async def asyncpg(self, token: str) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn(token))

    def url(self, path: str, metrics: str | None = None) -> str:
        return f"http://{metrics or self.metrics}{path}"

    def ready(self, metrics: str | None = None) -> tuple[int, dict[str, Any]]:
        try:
            status, body, _ = http_get(self.url("/readyz", metrics))
        except OSError:
            return 0, {}
        return status, json.loads(body)

    def scrape(self, metrics: str | None = None) -> dict:
        status, body, headers = http_get(self.url("/metrics", metrics))
        assert status == 200
        assert headers.get("Content-Type", "").startswith("text/plain")
        return samples(body)

    def log_lines(self, which: str = "proxy") -> list[str]:
        path = self.proxy_log if which == "proxy" else self.pdp_log
        return path.read_text().splitlines() if path.exists() else []


@contextlib.contextmanager
def proxy_stack(tmp: Path, kind: str = "postgres", **kwargs: Any) -> Iterator[ProxyStack]:
    """The PDP and a proxy of this kind running (a postgres one before a scratch database;
    another kind's connection given as `connection`)."""
    with scratch_database() if kind == "postgres" else contextlib.nullcontext() as database:
        stack = ProxyStack(tmp, database or ("", "", ""), **kwargs)
        try:
            stack.start_pdp()
            stack.start_proxy(kind)
            yield stack
        finally:
            stack.close()


# -- the tests ---------------------------------------------------------------------------


async def test_metrics_count_real_traffic(tmp_path):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: an upstream error
    broken = {
        "name": "billing-api",  # a name the shipped policy lets readers open
        "type": "postgres",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": dead,
        "metrics_listen": f"127.0.0.1:{free_port()}",
        "credentials": {"provider": "static", "username": "x", "password": "y"},
        "spool_dir": str(tmp_path / "spool-gone"),
    }
    with proxy_stack(tmp_path, extra_connections=[broken]) as stack:
        reader = stack.token("readonly")
        # psql: reads (one masked: email is a sensitive column; two of one shape, the
        # second answered from the decision cache) and a denied DDL
        result = stack.psql(
            reader,
            "select name from customers order by id",
            "select email from customers order by id",
            "select id from orders where id = 10",
            "select id from orders where id = 11",
            "drop table customers",
        )
        assert "Ada" in result.stdout and "ada@example.com" not in result.stdout
        assert "denied" in result.stderr
        # asyncpg: the same statement several times (extended protocol); then the server
        # ends the session's backend under it (an upstream error)
        conn = await stack.asyncpg(reader)
        try:
            for _ in range(5):
                assert await conn.fetchval("select count(*) from orders") == 2
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                    (stack.role,),
                )
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                await conn.fetchval("select 1")
        finally:
            await conn.close()
        # a session whose upstream is gone
        host, _, port = broken["listen"].rpartition(":")
        gone = subprocess.run(
            ["psql", f"host={host} port={port} user=agent dbname=x sslmode=disable", "-AtX",
             "-c", "select 1"],
            capture_output=True, text=True, env={**stack.env, "PGPASSWORD": reader},
        )  # fmt: skip
        assert gone.returncode != 0

        page = eventually(
            lambda: (p := stack.scrape()) and value(p, "portcullis_proxy_sessions_open") == 0 and p,
            "both sessions closed",
        )
        c = {"connection": "orders-db"}
        assert value(page, "portcullis_proxy_sessions_total", outcome="opened", **c) == 2
        assert value(page, "portcullis_proxy_commands_total", verdict="deny", **c) >= 1
        allowed = value(page, "portcullis_proxy_commands_total", verdict="allow", **c)
        masked = value(page, "portcullis_proxy_commands_total", verdict="mask", **c)
        assert allowed + masked >= 9  # 4 psql reads and 5 asyncpg, whatever masks
        assert masked >= 1
        rules = {
            dict(labels)["rule"]
            for (name, labels), v in page.items()
            if name == "portcullis_proxy_masked_values_total" and v > 0
        }
        assert rules, "masking counted by rule"
        assert value(page, "portcullis_proxy_masked_values_total", **c) >= 2  # two emails
        # every decision the proxy waited for is in the histogram (a cache hit is not; an
        # asyncpg prepared statement is decided once, at its Parse)
        decided = value(page, "portcullis_proxy_decision_seconds_count", **c)
        hits = value(page, "portcullis_proxy_decision_cache_hits_total", **c)
        assert hits >= 1
        assert decided >= 5
        assert value(page, "portcullis_proxy_decision_seconds_bucket", le="+Inf", **c) == decided
        assert value(page, "portcullis_proxy_credential_leases_live", provider="static", **c) == 0
        assert value(page, "portcullis_proxy_pdp_up", **c) == 1
        assert value(page, "portcullis_proxy_draining", **c) == 0
        assert ("portcullis_proxy_approvals_waiting", (("connection", "orders-db"),
                ("worker", "0"))) in page  # fmt: skip

        # the other connection's endpoint: its own registry, its upstream error
        other = stack.scrape(broken["metrics_listen"])
        assert value(other, "portcullis_proxy_upstream_errors_total",
                     reason="upstream_unavailable", connection="billing-api") == 1  # fmt: skip
        assert value(other, "portcullis_proxy_sessions_total", connection="orders-db") == 0
        assert value(page, "portcullis_proxy_upstream_errors_total", **c) == 1
        assert value(page, "portcullis_proxy_upstream_errors_total", reason="upstream_closed",
                     **c) == 1  # fmt: skip


async def test_a_live_lease_is_counted_while_its_session_is_open(tmp_path):
    with proxy_stack(tmp_path) as stack:
        conn = await stack.asyncpg(stack.token("readonly"))
        try:
            await conn.fetchval("select 1")
            page = stack.scrape()
            c = {"connection": "orders-db", "provider": "static"}
            assert value(page, "portcullis_proxy_credential_leases_live", **c) == 1
            assert value(page, "portcullis_proxy_sessions_open", connection="orders-db") == 1
        finally:
            await conn.close()


async def test_metrics_carry_no_token_credential_or_statement(tmp_path):
    """An attacker with a reader token puts secrets where labels might pick them up."""
    with proxy_stack(tmp_path) as stack:
        reader = stack.token("readonly")
        marker = "zz_marker_7c1d"
        stack.psql(reader, f"select '{marker}' as {marker}", f"drop table {marker}")
        conn = await stack.asyncpg(reader)
        try:
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute(f"create table {marker} (x int)")
        finally:
            await conn.close()
        _, body, _ = http_get(stack.url("/metrics"))
        for secret in (reader, stack.password, marker, stack.role):
            assert secret not in body


def test_the_grafana_dashboard_reads_only_metrics_that_exist(tmp_path):
    """deploy/grafana's dashboard: valid JSON, and every series it queries is served by a
    proxy's /metrics or the PDP's."""
    dashboard = json.loads((REPO / "deploy" / "grafana" / "portcullis-proxies.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs and all(panel.get("datasource") for panel in dashboard["panels"] if
                         panel["type"] != "row")  # fmt: skip
    wanted = {name for expr in exprs for name in re.findall(r"portcullis_[a-z_]+", expr)}
    with proxy_stack(tmp_path) as stack:
        assert stack.psql(stack.token("readonly"), "select 1").returncode == 0
        pages = [http_get(stack.url("/metrics"))[1]]
        # the PDP's asks a credential (a scraper's, naming no connection; test_pdp_probe_p9)
        key = ProxyKey.load_or_create(load_config(stack.path).pdp.proxy_key)
        scraper = {"Authorization": f"Bearer {key.issue('prometheus', [])}"}
        pdp_metrics = f"http://{stack.raw['pdp']['http_listen']}/metrics"
        pages.append(http_get(pdp_metrics, scraper)[1])
    served = set()
    for page in pages:
        for family in text_string_to_metric_families(page):
            # a labelled family not used yet has no sample, only its declaration
            served |= {family.name + suffix for suffix in SUFFIXES[family.type]}
            served |= {sample.name for sample in family.samples}
    assert wanted - served == set()


SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
    "info": ("_info",),
    "unknown": ("",),
}


async def test_an_approval_wait_is_counted_while_it_waits_and_by_its_outcome(tmp_path):
    with proxy_stack(tmp_path) as stack:
        conn = await stack.asyncpg(stack.token("readonly"))
        approver = stack.token("security", sub="bob@example.com")
        api = f"http://{stack.raw['pdp']['http_listen']}/v1/approvals"
        try:
            writing = asyncio.ensure_future(conn.execute("insert into orders values (12, 1, 5)"))
            await until(
                lambda: value(stack.scrape(), "portcullis_proxy_approvals_waiting") == 1,
                "the insert waits for an approval",
            )

            def pending() -> list[dict]:
                request = urllib.request.Request(
                    api + "?pending=1", headers={"Authorization": f"Bearer {approver}"}
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    return json.loads(response.read())["approvals"]

            (approval,) = await until(pending, "the request is listed")
            decide = urllib.request.Request(
                f"{api}/{approval['id']}/approve",
                data=json.dumps({"reason": "ticket 42"}).encode(),
                headers={"Authorization": f"Bearer {approver}",
                         "Content-Type": "application/json"},
                method="POST",
            )  # fmt: skip
            await asyncio.to_thread(urllib.request.urlopen, decide, timeout=10)
            assert await asyncio.wait_for(writing, 120) == "INSERT 0 1"
        finally:
            await conn.close()
        page = stack.scrape()
        c = {"connection": "orders-db"}
        assert value(page, "portcullis_proxy_approvals_waiting", **c) == 0
        assert value(page, "portcullis_proxy_approval_waits_total", outcome="approved", **c) == 1
        assert value(page, "portcullis_proxy_approval_wait_seconds_count", **c) == 1
        assert value(page, "portcullis_proxy_commands_total", verdict="require_approval", **c) == 0


def test_a_client_cannot_fill_the_masking_labels_with_names_of_its_own() -> None:
    """Attack (a reader): 300 queries each naming its computed output differently
    (`SELECT upper(note) AS a1`, `... AS a2` ...) made 200 labels of the reader's text, and
    everyone's masked-value counts after that went to "other". A derived rule's values
    are counted under "derived" alone; field and detector labels are the policy's names."""
    from proxies.runtime.metrics import ProxyMetrics

    metrics = ProxyMetrics("orders-db", "postgres")
    for i in range(300):
        metrics.masked({f"derived:a{i}": 1})
    metrics.masked({"field:email": 2, "detector:ssn": 1})
    assert metrics.masked_values == {"derived": 300, "field:email": 2, "detector:ssn": 1}
