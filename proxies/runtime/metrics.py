"""What a proxy counts for Prometheus: one registry per served connection and worker.

Owns the proxy's metric families (prometheus-client) and the few calls the runtime makes
on its hot path — each a counter or histogram child bound once, so a statement costs a
lock and an add, never a label lookup or anything per row. What is counted:

- `portcullis_proxy_sessions_open` (gauge) and `portcullis_proxy_sessions_total{outcome}`
  (opened | refused);
- `portcullis_proxy_commands_total{verdict}`: every recorded command by its verdict;
- `portcullis_proxy_decision_seconds`: a Decide as the proxy waits for it (the gRPC hop,
  the PDP's evaluation and its audit write), answered by the PDP — a cache hit is not in it;
- `portcullis_proxy_decision_cache_hits_total`;
- `portcullis_proxy_masked_values_total{rule}`: values masked, by the rule that masked them;
- `portcullis_proxy_approval_waits_total{outcome}`, `portcullis_proxy_approvals_waiting`
  and `portcullis_proxy_approval_wait_seconds`;
- `portcullis_proxy_credential_leases_live{provider}` (static | vault);
- `portcullis_proxy_upstream_errors_total{reason}`;
- `portcullis_proxy_pdp_up`, `portcullis_proxy_draining` (what /readyz also says).

Every series carries `connection` and `worker`. Several worker processes of a connection
each serve their own registry on their own port (listen port + worker number,
proxies.runtime.health): Prometheus scrapes each, and `sum by (connection)` adds them up.
Nothing here reads a command's text, a token or a credential: labels are names of
verdicts, rules, providers and reasons only, and the number of distinct rule and reason
labels is bounded (MAX_LABELS; beyond it they are counted as "other").
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# seconds: a decision over the stream is usually well under a millisecond of PDP time plus
# the hop; the upper buckets catch a PDP at its deadline (pdp_timeout_seconds, 2 s)
DECISION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
APPROVAL_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
VERDICTS = ("allow", "deny", "mask", "require_approval")
MAX_LABELS = 200  # distinct rule / reason labels per family; more are "other"
MAX_LABEL_LENGTH = 64


class ProxyMetrics:
    """The metrics of one connection in one process (its worker)."""

    def __init__(self, connection: str, kind: str = "", worker: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        base = {"connection": connection, "worker": str(worker)}
        names = ["connection", "worker"]
        r = self.registry
        self._sessions_open = Gauge(
            "portcullis_proxy_sessions_open", "Sessions open at this proxy.", names, registry=r
        ).labels(**base)
        sessions = Counter(
            "portcullis_proxy_sessions",
            "Sessions asked for, by outcome (opened, refused).",
            [*names, "outcome"],
            registry=r,
        )
        self._opened = sessions.labels(**base, outcome="opened")
        self._refused = sessions.labels(**base, outcome="refused")
        commands = Counter(
            "portcullis_proxy_commands",
            "Commands recorded, by the verdict enforced.",
            [*names, "verdict"],
            registry=r,
        )
        self._commands = {v: commands.labels(**base, verdict=v) for v in VERDICTS}
        self._decision = Histogram(
            "portcullis_proxy_decision_seconds",
            "Time a command waited for its decision from the PDP (the gRPC hop included).",
            names,
            buckets=DECISION_BUCKETS,
            registry=r,
        ).labels(**base)
        self._cache_hits = Counter(
            "portcullis_proxy_decision_cache_hits",
            "Commands answered from the decision cache (no PDP round trip).",
            names,
            registry=r,
        ).labels(**base)
        self._masked_family = Counter(
            "portcullis_proxy_masked_values",
            "Values masked before they reached the client, by rule.",
            [*names, "rule"],
            registry=r,
        )
        self._masked: dict[str, Counter] = {}
        waits = Counter(
            "portcullis_proxy_approval_waits",
            "Commands held for a person's approval, by outcome.",
            [*names, "outcome"],
            registry=r,
        )
        self._waits_family = waits
        self._waits: dict[str, Counter] = {}
        self._base = base
        self._waiting = Gauge(
            "portcullis_proxy_approvals_waiting",
            "Commands waiting for an approval now.",
            names,
            registry=r,
        ).labels(**base)
        self._wait_seconds = Histogram(
            "portcullis_proxy_approval_wait_seconds",
            "How long a command waited for its approval decision.",
            names,
            buckets=APPROVAL_BUCKETS,
            registry=r,
        ).labels(**base)
        self._leases = Gauge(
            "portcullis_proxy_credential_leases_live",
            "Upstream credentials held for open sessions (a Vault lease each with provider vault).",
            [*names, "provider"],
            registry=r,
        )
        self._errors_family = Counter(
            "portcullis_proxy_upstream_errors",
            "Upstream failures: unreachable, closed under a session, refused an answer.",
            [*names, "reason"],
            registry=r,
        )
        self._errors: dict[str, Counter] = {}
        self._pdp_up = Gauge(
            "portcullis_proxy_pdp_up",
            "1 while this proxy's PDP answers its watch (what /readyz requires).",
            names,
            registry=r,
        ).labels(**base)
        self._draining = Gauge(
            "portcullis_proxy_draining",
            "1 once the proxy stopped accepting and drains its sessions.",
            names,
            registry=r,
        ).labels(**base)
        self._pdp_up.set_function(lambda: 0.0)

    # -- the calls the runtime makes -----------------------------------------------------

    def session_opened(self) -> None:
        self._opened.inc()
        self._sessions_open.inc()

    def session_refused(self) -> None:
        self._refused.inc()

    def session_closed(self) -> None:
        self._sessions_open.dec()

    def command(self, verdict: str) -> None:
        counter = self._commands.get(verdict)
        if counter is not None:
            counter.inc()

    def decided(self, seconds: float) -> None:
        self._decision.observe(seconds)

    def cache_hit(self) -> None:
        self._cache_hits.inc()

    def masked(self, counts: dict[str, int]) -> None:
        for rule, count in counts.items():
            self._child(self._masked, self._masked_family, "rule", rule).inc(count)

    def approval_wait_started(self) -> None:
        self._waiting.inc()

    def approval_wait_ended(self, outcome: str, seconds: float) -> None:
        self._waiting.dec()
        self._wait_seconds.observe(seconds)
        self._child(self._waits, self._waits_family, "outcome", outcome).inc()

    def lease_acquired(self, provider: str) -> None:
        self._leases.labels(**self._base, provider=provider).inc()

    def lease_released(self, provider: str) -> None:
        self._leases.labels(**self._base, provider=provider).dec()

    def upstream_error(self, reason: str) -> None:
        self._child(self._errors, self._errors_family, "reason", reason).inc()

    def watch_pdp(self, up: object) -> None:
        """up(): whether the PDP answers now, read at each scrape."""
        self._pdp_up.set_function(lambda: 1.0 if up() else 0.0)  # type: ignore[operator]

    def draining(self) -> None:
        self._draining.set(1)

    def _child(
        self, children: dict[str, Counter], family: Counter, name: str, value: str
    ) -> Counter:
        child = children.get(value)
        if child is not None:
            return child
        full = len(children) >= MAX_LABELS
        label = "other" if full else value[:MAX_LABEL_LENGTH]
        child = children.get(label)
        if child is None:
            child = family.labels(**self._base, **{name: label})
        if not full:  # the memory of values is bounded too
            children[label] = children[value] = child
        return child
