"""wrk through Portcullis's HTTP proxy, beside the upstream directly and nginx, in one run.

Starts, as their own processes: the upstream (bench/http/upstream.py: aiohttp on uvloop,
a JSON document from memory), nginx from Debian as a plain reverse proxy to it
(`worker_processes 1`, keep-alive to the upstream: one worker, as the Portcullis proxy is
one process), a bare uvloop TCP relay (bench/postgres/relay.py: the floor of any Python
proxy here, nothing parsed), the PDP (`portcullis pdp`, embedded OPA, SQLite decision
log) and the HTTP proxy (`python -m proxies http`) with two connections to the same
upstream — decision cache off and on — and a third with the cache off and no recording
(`recording: false`, what the postgres bench measures too: the share of an uncached
request that is the evidence, not the decision). The policy is the shipped library with
one bench-only change to its cache hints: GET/HEAD on `bench-cache` are declared reusable
for the session (`cache_key: exact`), on `bench-nocache` and `bench-norecord` nothing is
(so each of their requests is a Decide the PDP evaluates in full, not an evaluation it
reuses). The token's groups are dba and pii-readers: every GET is allowed and nothing is
masked, so the figures are deciding and relaying alone.

Then, in `--rounds` rounds whose order rotates (a drift of the shared machine's speed
favours no target), `wrk` with the same threads, connections and duration against each
target: requests/s, p50/p99 (wrk --latency), CPU per request of the proxy, the PDP, nginx,
the upstream and the whole machine, and the PDP's decisions per request (from its
/metrics: 1 with the cache off, near 0 with it on). Then, again in rotating rounds, one
connection (`wrk -c 1`) against every target, beside the
PDP's own Decide p50 measured the same way from this process (one caller, over a
DecideStream as the proxy calls it, for the same request on a `bench-nocache` session):
the p50 each uncached request adds (cache off - direct) over the Decide p50. Prints the
medians of the rounds, the ratios (Portcullis/nginx, Portcullis/direct: medians of the
rounds' own ratios) against the issue's targets, and one JSON line with the summary.
Not a test: nothing here asserts.

`--profile` runs the proxy under cProfile (bench/http/profiled_proxy.py) for one extra
cache-off and one cache-on run after the rounds and prints where its event loop's time
went; `--prelude FILE` runs FILE in the proxy process before it starts, to measure a
proposed change as a patch without editing the proxy; `--workers N` runs each connection
as N proxy processes sharing its port (`workers: N`; the target compares one process
with nginx's one worker). When no proxy serves `type: http` yet, only direct and nginx
are measured.

    python bench/http/bench_wrk.py [--seconds 8] [--rounds 3] [--connections 32]
        [--threads 1] [--latency-seconds 5] [--large] [--profile] [--prelude FILE]
        [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "tests"))

from pdp_harness import free_port  # noqa: E402

# only now: a bench/pdp directory on the path must not stand for the pdp package
sys.path.append(str(REPO / "bench"))
from cpu_meter import CPUMeter  # noqa: E402
from portcullis_yaml import pdp_and_identity  # noqa: E402
from processes import stop_all  # noqa: E402

NGINX = "/usr/sbin/nginx"
DIRECT, VIA_NGINX, RELAY = "direct", "nginx", "python relay (no parsing)"
CACHE_OFF, CACHE_ON = "portcullis (cache off)", "portcullis (cache on)"
NO_RECORDING = "portcullis (cache off, recording off)"
BENCH_CONNECTIONS = ("bench-nocache", "bench-cache", "bench-norecord")
PORTCULLIS = (CACHE_OFF, CACHE_ON, NO_RECORDING)

# The shipped cache hints answer postgres.query only; these clauses go first in its else
# chain, so whatever the shipped policy says of http.request, bench-nocache's and
# bench-norecord's answers are never reusable and bench-cache's reads are, for the session
# and policy revision.
TTL = "data.portcullis.decision_cache_ttl_seconds"
CACHE_ANCHOR = f'cache_part := {{"cache_ttl_seconds": {TTL}'
CACHE_CLAUSES = f"""cache_part := {{"cache_ttl_seconds": 0, "cache_key": "exact"}} if {{
	input.connection.name in {{"bench-nocache", "bench-norecord"}}
}} else := {{"cache_ttl_seconds": {TTL}, "cache_key": "exact"}} if {{
	input.command.kind == "http.request"
	input.connection.name == "bench-cache"
	upper(input.command.http.method) in {{"GET", "HEAD"}}
	not input.approval
}} else := {{"cache_ttl_seconds": {TTL}"""


def wait_port(
    port: int, proc: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 60
) -> None:
    """Until something listens on the port; a process that ended first is an error showing
    the end of its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                said = log.read_text()[-2000:] if log is not None and log.exists() else ""
                raise RuntimeError(f"{proc.args!r} ended ({proc.returncode}):\n{said}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ---------------------------------------------------------------- wrk


def wrk(
    url: str, seconds: float, connections: int, threads: int, headers: dict[str, str]
) -> dict[str, float]:
    """One wrk run: requests/s, p50/p99 in ms, and the requests that were not 2xx/3xx or
    failed at the socket (`errors`)."""
    cmd = ["wrk", "--latency", "-t", str(threads), "-c", str(connections)]
    cmd += ["-d", f"{max(1, round(seconds))}s", "--timeout", "5s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr.strip()[-300:]}")
    return parse_wrk(out.stdout)


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse_wrk(text: str) -> dict[str, float]:
    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if found is None:
            raise RuntimeError(f"no {percent}% latency in wrk's output:\n{text}")
        return float(found.group(1)) * UNITS_MS[found.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    requests = re.search(r"^\s*(\d+) requests in", text, re.M)
    if rate is None or requests is None:
        raise RuntimeError(f"no requests/s in wrk's output:\n{text}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {
        "rps": float(rate.group(1)),
        "requests": float(requests.group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": float(errors),
    }


# ---------------------------------------------------------------- the peers


def start_nginx(tmp: Path, port: int, upstream: int) -> subprocess.Popen:
    """nginx as a plain reverse proxy: one worker, keep-alive to the upstream, no access
    log, HTTP/1.1 both sides — what a team would put in front of an API. Its response
    buffers hold the large document in memory (the default 8 x 4k would spill it to a
    temporary file per request, measuring the disk instead)."""
    prefix = tmp / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffers 64 8k;
        }}
    }}
}}
"""
    )
    return subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def http_served() -> bool:
    """Whether this build has a proxy for `type: http` connections."""
    from portcullis.protocols import protocol

    declared = protocol("http")
    return declared is not None and declared.serve is not None


def bench_policies(tmp: Path, source: Path = REPO / "rego") -> Path:
    """The shipped policy library (from `source`) with the benchmark's connections and
    cache hints."""
    policies = tmp / "rego"
    shutil.copytree(source, policies)
    data = json.loads((policies / "data.json").read_text())
    template = data["portcullis"]["connections"]["billing-api"]
    for name in BENCH_CONNECTIONS:
        data["portcullis"]["connections"][name] = template
    (policies / "data.json").write_text(json.dumps(data))
    decision = policies / "portcullis" / "decision.rego"
    text = decision.read_text()
    if text.count(CACHE_ANCHOR) != 1:
        raise RuntimeError(f"{decision}: its cache hints changed; update CACHE_CLAUSES")
    decision.write_text(text.replace(CACHE_ANCHOR, CACHE_CLAUSES))
    return policies


def portcullis_config(tmp: Path, policies: Path, upstream: int, workers: int = 1) -> dict[str, Any]:
    ports = {name: free_port() for name in BENCH_CONNECTIONS}
    return {
        **pdp_and_identity(tmp, policies, free_port(), http_listen=f"127.0.0.1:{free_port()}"),
        "connections": [
            {
                "name": name,
                "type": "http",
                "listen": f"127.0.0.1:{ports[name]}",
                "upstream": f"http://127.0.0.1:{upstream}",
                "decision_cache": name == "bench-cache",
                **({"workers": workers} if workers != 1 else {}),
                "recording": name != "bench-norecord",
                "spool_dir": str(tmp / "spool"),
                "credentials": {
                    "provider": "static",
                    "header": "X-Upstream-Token",
                    "value": "bench-upstream-secret",
                },
            }
            for name in BENCH_CONNECTIONS
        ],
    }


def pdp_counts(metrics_url: str, credential: str) -> dict[str, float]:
    """What the PDP has answered so far (its /metrics): decisions of every verdict, the
    denies among them, and the evaluations that failed or overran their deadline (each a
    deny, fail closed: under load these are the non-2xx answers wrk counts). /metrics asks
    a credential: the proxies' own, as the bearer token a Prometheus scrape sends."""
    scrape = urllib.request.Request(metrics_url, headers={"Authorization": f"Bearer {credential}"})
    with urllib.request.urlopen(scrape, timeout=5) as response:
        text = response.read().decode()
    counts = {"decisions": 0.0, "denied": 0.0, "engine_errors": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("portcullis_decisions_total"):
            counts["decisions"] += float(value)
            if 'verdict="deny"' in name:
                counts["denied"] += float(value)
        elif name.startswith("portcullis_engine_errors_total"):
            counts["engine_errors"] += float(value)
    return counts


def fetch(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ---------------------------------------------------------------- the PDP's own Decide


def decide_command(path: str, host: str) -> Any:
    """The Decide command the HTTP proxy sends for wrk's `GET path`, built by the proxy's
    own code (proxies/http: the codec's head, messages.command_text and the attributes
    HttpProxy sends), so the PDP is timed on exactly what the proxy asks."""
    from google.protobuf import struct_pb2

    from portcullis.http_target import normalise
    from portcullis.v1 import pdp_pb2
    from proxies.http import messages
    from proxies.http.codec import parse_head

    head = parse_head(f"GET {path} HTTP/1.1\r\nHost: {host}".encode())
    target = normalise(head.target)
    attributes = struct_pb2.Struct()
    attributes.update(
        {
            "method": head.method,
            "path": target.path,
            "query": target.query_params(),
            "headers": messages.policy_headers(head),
        }
    )
    raw = messages.command_text(head, b"")
    return pdp_pb2.Command(kind="http.request", raw=raw, attributes=attributes)


async def decide_p50(
    address: str, credential: str, token: str, path: str, host: str, seconds: float
) -> dict[str, float]:
    """One caller, back to back, over a DecideStream (proxies.runtime.decide_calls, what the
    proxy uses) on a bench-nocache session: Decide's p50/p99 in ms and calls/s."""
    import grpc

    from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
    from portcullis.wire import CREDENTIAL_METADATA
    from proxies.runtime.decide_calls import DecideCalls

    metadata = ((CREDENTIAL_METADATA, credential),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        key = secrets.token_urlsafe(32)  # the session's, as a proxy makes one
        opened = await stub.OpenSession(
            pdp_pb2.OpenSessionRequest(
                token=token,
                connection=pdp_pb2.Connection(name="bench-nocache", type="http"),
                client_addr="127.0.0.1:1",
                client="bench",
                session_key=key,
            ),
            metadata=metadata,
        )
        request = pdp_pb2.DecideRequest(
            session_id=opened.session_id,
            session_key=key,
            command=decide_command(path, host),
            timeout_ms=5000,
        )
        calls = DecideCalls(stub, metadata)
        verdict = ""
        for _ in range(200):  # warm-up: the stream, the PDP's workers
            answer = await calls.decide(request, timeout=5)
            verdict = pdp_pb2.Verdict.Name(answer.decision.verdict)
        samples = []
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await calls.decide(request, timeout=5)
            samples.append((time.perf_counter() - started) * 1000)
        await calls.close()
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(
                session_id=opened.session_id, session_key=key, reason="client_disconnect"
            ),
            metadata=metadata,
        )
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99)],
        "rps": len(samples) / seconds,
        "verdict": verdict,  # type: ignore[dict-item]
    }


# ---------------------------------------------------------------- an upstream request's cost


async def upstream_request_cpu_us(port: int, path: str, n: int = 3000) -> dict[str, float]:
    """CPU µs this process spends per GET of the upstream, sequential over one keep-alive
    connection: through aiohttp's ClientSession (what the HTTP proxy forwards with), and
    over a bare asyncio stream (request bytes written, head read, Content-Length body read)
    — what forwarding costs a Python proxy before anything of its own."""
    import aiohttp

    costs = {}
    async with aiohttp.ClientSession() as client:
        url = f"http://127.0.0.1:{port}{path}"
        for round_ in range(2):  # the first round warms up
            started = time.process_time()
            for _ in range(n if round_ else 200):
                async with client.get(url) as response:
                    await response.read()
            costs["aiohttp"] = (time.process_time() - started) / n * 1e6
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    for round_ in range(2):
        started = time.process_time()
        for _ in range(n if round_ else 200):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
        costs["stream"] = (time.process_time() - started) / n * 1e6
    writer.close()
    return costs


# ---------------------------------------------------------------- profiles


def profile_summary(path: Path, top: int = 25) -> str:
    """The proxy's event-loop thread in one phase: the functions by own time, and by
    cumulative time, with their share of the profiled time."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = stats.stats  # type: ignore[attr-defined]
    lines = [f"    profiled {total:.2f} s of CPU of the proxy's event-loop thread"]
    for title, column in (("own time", 2), ("cumulative", 3)):
        lines.append(f"    by {title}:")
        ranked = sorted(rows.items(), key=lambda kv: kv[1][column], reverse=True)[:top]
        for (file, line, name), values in ranked:
            where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
            lines.append(
                f"      {100 * values[column] / total:5.1f}%  {values[column]:6.2f}s"
                f"  {values[1]:>8} calls  {name}  ({where})"
            )
    return "\n".join(lines)


def profile_text(path: Path) -> str:
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(40)
    return out.getvalue()


# ---------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds of every target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (2 cores here)")
    parser.add_argument("--latency-seconds", type=float, default=5, help="per 1-connection run")
    parser.add_argument("--large", action="store_true", help="also the ~100 KiB document")
    parser.add_argument("--profile", action="store_true", help="cProfile the proxy")
    parser.add_argument("--no-portcullis", action="store_true", help="direct and nginx only")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="proxy processes per connection (the target compares 1 with nginx's 1 worker)",
    )
    parser.add_argument(
        "--prelude",
        type=Path,
        default=None,
        help="a Python file run in the proxy process before it starts (try a change)",
    )
    args = parser.parse_args()

    with_portcullis = not args.no_portcullis and http_served()
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-http-"))
    tmp.chmod(0o755)  # nginx's worker runs as nobody and creates its temp paths below
    procs: list[subprocess.Popen] = []
    docs = ["/doc.json", *(["/large.json"] if args.large else [])]
    try:
        upstream_port, nginx_port = free_port(), free_port()
        upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), str(upstream_port)])
        procs.append(upstream)
        wait_port(upstream_port)
        nginx = start_nginx(tmp, nginx_port, upstream_port)
        procs.append(nginx)
        wait_port(nginx_port)
        relay_port = free_port()
        relay = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench/postgres/relay.py"),
                str(relay_port),
                str(upstream_port),
            ]
        )
        procs.append(relay)
        wait_port(relay_port)
        watched = {"upstream": upstream.pid, "nginx": nginx.pid, "relay": relay.pid}
        bases: dict[str, tuple[str, dict[str, str]]] = {
            DIRECT: (f"http://127.0.0.1:{upstream_port}", {}),
            VIA_NGINX: (f"http://127.0.0.1:{nginx_port}", {}),
            RELAY: (f"http://127.0.0.1:{relay_port}", {}),
        }
        pdp_info: dict[str, Any] = {}
        if with_portcullis:
            policies = bench_policies(tmp)
            config = portcullis_config(tmp, policies, upstream_port, args.workers)
            path = tmp / "portcullis.yaml"
            path.write_text(yaml.safe_dump(config))
            cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
            token = subprocess.run(
                [
                    *cli,
                    "token",
                    "--sub",
                    "bench@example.com",
                    "--groups",
                    "dba,pii-readers",
                    "--ttl",
                    "2h",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            pdp_log = (tmp / "pdp.log").open("w")
            pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, stderr=pdp_log)
            procs.append(pdp)
            wait_port(int(config["pdp"]["listen"].rsplit(":", 1)[1]), pdp, tmp / "pdp.log")
            proxy_cmd = [sys.executable, "-m", "proxies", "http", "-c", str(path)]
            proxy_env = dict(os.environ)
            if args.profile or args.prelude:
                proxy_cmd[1:3] = [str(HERE / "profiled_proxy.py"), str(tmp / "proxy")]
            if args.prelude:
                proxy_env["PORTCULLIS_BENCH_PRELUDE"] = str(args.prelude.resolve())
            proxy_log = (tmp / "proxy.log").open("w")
            proxy = subprocess.Popen(proxy_cmd, cwd=tmp, stderr=proxy_log, env=proxy_env)
            procs.append(proxy)
            listen = {c["name"]: c["listen"] for c in config["connections"]}
            for address in listen.values():
                wait_port(int(address.rsplit(":", 1)[1]), proxy, tmp / "proxy.log")
            auth = {"Authorization": f"Bearer {token}"}
            bases[CACHE_OFF] = (f"http://{listen['bench-nocache']}", auth)
            bases[CACHE_ON] = (f"http://{listen['bench-cache']}", auth)
            bases[NO_RECORDING] = (f"http://{listen['bench-norecord']}", auth)
            watched.update({"proxy": proxy.pid, "pdp": pdp.pid})
            pdp_info = {
                "address": config["pdp"]["listen"],
                "metrics": f"http://{config['pdp']['http_listen']}/metrics",
                "credential": (tmp / "var" / "proxy.credential").read_text().strip(),
                "token": token,
            }

        # every target answers each document as the upstream does before anything counts
        for doc in docs:
            expected = fetch(bases[DIRECT][0] + doc, {})
            for name, (base, headers) in bases.items():
                status, body = fetch(base + doc, headers)
                if (status, body) != expected:
                    raise RuntimeError(f"{name} answers {doc} with {status}: {body[:300]!r}")
            for base, headers in bases.values():  # warm-up
                wrk(base + doc, 1, args.connections, args.threads, headers)

        def measured(name: str, doc: str, seconds: float, connections: int) -> dict[str, float]:
            """One wrk run with what it cost: CPU µs per request of each watched process
            and of the machine, the steal, and the PDP's decisions per request."""
            base, headers = bases[name]
            before = pdp_counts(pdp_info["metrics"], pdp_info["credential"]) if pdp_info else {}
            meter = CPUMeter(watched)
            result = wrk(base + doc, seconds, connections, args.threads, headers)
            result.update(meter.per(result["requests"]))
            if pdp_info:
                after = pdp_counts(pdp_info["metrics"], pdp_info["credential"])
                decided = after["decisions"] - before["decisions"]
                result["decisions_per_request"] = decided / max(1.0, result["requests"])
                result["denied"] = after["denied"] - before["denied"]
                result["engine_errors"] = after["engine_errors"] - before["engine_errors"]
            return result

        names = list(bases)
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for doc in docs:
            for r in range(args.rounds):
                for name in rotated(names, r):
                    runs.setdefault((doc, name), []).append(
                        measured(name, doc, args.seconds, args.connections)
                    )

        # one connection: the latency a request gains, beside the PDP's own Decide
        latency_names = list(bases)
        single: dict[str, list[dict[str, float]]] = {}
        decides: list[dict[str, float]] = []
        syncs: list[float] = []
        for r in range(args.rounds):
            for name in rotated(latency_names, r):
                single.setdefault(name, []).append(measured(name, docs[0], args.latency_seconds, 1))
            if pdp_info:
                syncs.append(fdatasync_ms(tmp))
                decides.append(
                    asyncio.run(
                        decide_p50(
                            pdp_info["address"],
                            pdp_info["credential"],
                            pdp_info["token"],
                            docs[0],
                            bases[CACHE_OFF][0].removeprefix("http://"),
                            args.latency_seconds,
                        )
                    )
                )

        import uvloop

        client_cost = uvloop.run(upstream_request_cpu_us(upstream_port, docs[0]))
        profiles: dict[str, Path] = {}
        if args.profile and with_portcullis:
            for n, name in enumerate((CACHE_OFF, CACHE_ON)):
                os.kill(watched["proxy"], signal.SIGUSR1)
                measured(name, docs[0], args.seconds, args.connections)
                os.kill(watched["proxy"], signal.SIGUSR2)
                written = tmp / f"proxy.{n}.prof"
                deadline = time.monotonic() + 30
                while not written.exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1)  # dump_stats finishing its write
                kept = Path(tempfile.gettempdir()) / f"portcullis-bench-http-{os.getpid()}-{n}.prof"
                shutil.copy(written, kept)
                profiles[name] = kept
    finally:
        complaints = logged_complaints(tmp / "pdp.log", tmp / "proxy.log")
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)

    report(args, docs, names, runs, single, decides, syncs, client_cost, profiles, complaints)


def fdatasync_ms(directory: Path, n: int = 300) -> float:
    """p50 of an fdatasync after a 4 KiB append on the disk the decision log is on: the
    PDP's decision log waits for one per batch before answering, so on a shared disk this
    is most of an uncached Decide at one caller."""
    taken = []
    fd = os.open(directory / "fdatasync.probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(n):
            os.write(fd, b"\0" * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            taken.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
    return statistics.median(taken)


def logged_complaints(*logs: Path) -> list[str]:
    """Distinct WARNING/ERROR/CRITICAL lines of the logs (timestamps cut), in order."""
    seen: dict[str, None] = {}
    for log in logs:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if re.search(r" (WARNING|ERROR|CRITICAL) ", line):
                    seen.setdefault(f"{log.stem}: {line[24:][:200]}")
    return list(seen)


def rotated(names: list[str], r: int) -> list[str]:
    """The targets in round r's order: each goes first once every len(names) rounds."""
    k = r % len(names)
    return names[k:] + names[:k]


def median_of(samples: list[dict[str, float]], key: str) -> float:
    values = [s[key] for s in samples if key in s]
    return statistics.median(values) if values else float("nan")


def report(
    args: argparse.Namespace,
    docs: list[str],
    names: list[str],
    runs: dict[tuple[str, str], list[dict[str, float]]],
    single: dict[str, list[dict[str, float]]],
    decides: list[dict[str, float]],
    syncs: list[float],
    client_cost: dict[str, float],
    profiles: dict[str, Path],
    complaints: list[str],
) -> None:
    print(
        f"wrk -t {args.threads} -c {args.connections}, {args.seconds:g}s per run, medians of "
        f"{args.rounds} rotating rounds; {os.cpu_count()} cores shared by every process; "
        "nginx: worker_processes 1 (the Portcullis proxy is one process)"
    )
    if args.prelude:
        print(f"  THE PROXY RAN PATCHED by {args.prelude} (an experiment, not the proxy as built)")
    if args.workers != 1:
        print(f"  THE PROXY RAN {args.workers} WORKER PROCESSES per connection (nginx: 1 worker)")
    summary: dict[str, Any] = {"bench": "http", "connections": args.connections}
    if args.prelude:
        summary["prelude"] = str(args.prelude)
    if args.workers != 1:
        summary["workers"] = args.workers
    for doc in docs:
        print(f"  GET {doc}")
        for name in names:
            rs = runs[(doc, name)]
            line = (
                f"    {name:<26} {median_of(rs, 'rps'):9.0f} req/s"
                f"   p50 {median_of(rs, 'p50'):7.3f} ms   p99 {median_of(rs, 'p99'):7.3f} ms"
                f"   steal {100 * median_of(rs, 'steal'):3.0f}%"
            )
            errors = sum(r["errors"] for r in rs)
            if errors:
                line += f"   NON-2xx/ERRORS {errors:.0f}"
                denied = sum(r.get("denied", 0.0) for r in rs)
                overran = sum(r.get("engine_errors", 0.0) for r in rs)
                line += f" (PDP: {denied:.0f} denied, {overran:.0f} evaluations failed/overran)"
            if "decisions_per_request" in rs[0]:
                line += f"   decisions/request {median_of(rs, 'decisions_per_request'):.3f}"
            print(line)
        print("    CPU per request (µs): the proxy in between / PDP / upstream / whole machine")
        for name in names:
            rs = runs[(doc, name)]
            between = {VIA_NGINX: "nginx", RELAY: "relay", DIRECT: ""}.get(name, "proxy")
            own = [median_of(rs, f"{p}_us") for p in (between, "pdp", "upstream")]
            if name not in PORTCULLIS:
                own[1] = float("nan")
            # "?": a process tree that lost CPU time in the run, an evaluation worker
            # replaced after overrunning its deadline (its time left with it)
            cells = " / ".join(
                "    -" if v != v else "    ?" if v < 0 else f"{v:5.0f}" for v in own
            )
            print(f"      {name:<26} {cells} / {median_of(rs, 'machine_us'):5.0f}")
        doc_summary: dict[str, Any] = {
            name: {
                "rps": round(median_of(runs[(doc, name)], "rps")),
                "p50_ms": round(median_of(runs[(doc, name)], "p50"), 3),
                "p99_ms": round(median_of(runs[(doc, name)], "p99"), 3),
            }
            for name in names
        }
        for name in PORTCULLIS:
            if (doc, name) not in runs:
                continue
            pairs = list(
                zip(runs[(doc, name)], runs[(doc, VIA_NGINX)], runs[(doc, DIRECT)], strict=True)
            )
            rps_pairs = [(p["rps"], n["rps"]) for p, n, _ in pairs]
            to_nginx = statistics.median(p["rps"] / n["rps"] for p, n, _ in pairs)
            to_direct = statistics.median(p["rps"] / d["rps"] for p, _, d in pairs)
            print(
                f"    {name}: /nginx {to_nginx:.2f}   /direct {to_direct:.2f}   "
                f"(median of the rounds' ratios; rounds /nginx: "
                f"{', '.join(f'{p_rps / n_rps:.2f}' for p_rps, n_rps in rps_pairs)})"
            )
            doc_summary[name].update(
                {"to_nginx": round(to_nginx, 3), "to_direct": round(to_direct, 3)}
            )
        summary[doc] = doc_summary

    print(f"  one connection (wrk -c 1), GET {docs[0]}, {args.latency_seconds:g}s per run")
    for name, rs in single.items():
        print(
            f"    {name:<26} p50 {1000 * median_of(rs, 'p50'):7.0f} µs   p99 "
            f"{1000 * median_of(rs, 'p99'):7.0f} µs   {median_of(rs, 'rps'):7.0f} req/s"
        )
    if decides:
        decide = median_of(decides, "p50")
        print(
            f"    PDP Decide alone (1 caller, DecideStream, bench-nocache, evaluated): p50 "
            f"{1000 * decide:5.0f} µs   p99 {1000 * median_of(decides, 'p99'):5.0f} µs   "
            f"verdict {decides[0]['verdict']}"
        )
        print(
            f"      (an fdatasync of a 4 KiB append on the decision log's disk, same rounds: "
            f"p50 {statistics.median(syncs):.2f} ms; the log waits for one per batch)"
        )
        per_round = [
            (off["p50"] - direct["p50"]) / d["p50"]
            for off, direct, d in zip(single[CACHE_OFF], single[DIRECT], decides, strict=True)
        ]
        added = median_of(single[CACHE_OFF], "p50") - median_of(single[DIRECT], "p50")
        added_on = median_of(single[CACHE_ON], "p50") - median_of(single[DIRECT], "p50")
        bare = median_of(single[NO_RECORDING], "p50") - median_of(single[DIRECT], "p50")
        print(
            f"    added p50 per uncached request (cache off - direct) {1000 * added:.0f} µs"
            f" = {added / decide:.2f} x Decide p50 (rounds: "
            f"{', '.join(f'{x:.2f}' for x in per_round)}); cache on adds {1000 * added_on:.0f} µs;"
            f" cache off without recording adds {1000 * bare:.0f} µs = {bare / decide:.2f} x"
        )
        on_nginx = summary[docs[0]][CACHE_ON]["to_nginx"]
        print(
            f"  targets: cache on >= 0.50 x nginx req/s: {on_nginx:.2f} "
            f"{'met' if on_nginx >= 0.5 else 'MISSED'}; added p50 <= 1.5 x Decide p50: "
            f"{added / decide:.2f} {'met' if added / decide <= 1.5 else 'MISSED'}"
        )
        summary.update(
            {
                "decide_p50_us": round(1000 * decide),
                "fdatasync_p50_ms": round(statistics.median(syncs), 3),
                "added_p50_us": round(1000 * added),
                "added_over_decide": round(added / decide, 2),
                "added_p50_us_recording_off": round(1000 * bare),
                "cache_on_added_p50_us": round(1000 * added_on),
                "cache_on_to_nginx": on_nginx,
                "targets_met": {
                    "cache_on_to_nginx>=0.5": on_nginx >= 0.5,
                    "added_over_decide<=1.5": added / decide <= 1.5,
                },
            }
        )
    print(
        f"  forwarding alone, CPU per upstream GET in one process: aiohttp ClientSession "
        f"{client_cost['aiohttp']:.0f} µs, a bare asyncio stream {client_cost['stream']:.0f} µs"
    )
    summary["upstream_get_cpu_us"] = {k: round(v) for k, v in client_cost.items()}
    if complaints:
        print("  what the PDP and the proxy logged at WARNING or above (distinct, first 8):")
        for line in complaints[:8]:
            print(f"    {line}")
    for name, path in profiles.items():
        print(f"  profile of the proxy, {name} (kept in {path}):")
        print(profile_summary(path))
    print("SUMMARY " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
