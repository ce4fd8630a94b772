"""What a proxy counts for Prometheus: one registry per served connection and worker.

Owns the proxy's metric families and the few calls the runtime makes on its hot path.
Those calls add to plain integers and lists (a dict lookup and an add: a few hundred
nanoseconds, no lock — a proxy's sessions all run on its one event loop, and so does the
scrape); the families are built from them only when /metrics is scraped, by a
prometheus-client collector (`registry`). Nothing is counted per row. What is counted:

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

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# seconds: a decision over the stream is usually well under a millisecond of PDP time plus
# the hop; the upper buckets catch a PDP at its deadline (pdp_timeout_seconds, 2 s)
DECISION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
APPROVAL_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
VERDICTS = ("allow", "deny", "mask", "require_approval")
MAX_LABELS = 200  # distinct rule / reason labels per family; more are "other"
MAX_LABEL_LENGTH = 64
PREFIX = "portcullis_proxy_"


class Histogram:
    """Observations counted per upper bound (not cumulative here) and summed."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bucket `le` counts the values <= its bound: the first bound not below value
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class ProxyMetrics:
    """The metrics of one connection in one process (its worker)."""

    def __init__(self, connection: str, kind: str = "", worker: int = 0) -> None:
        self.labels = [connection, str(worker)]
        self.kind = kind
        self.sessions_open = 0
        self.sessions = {"opened": 0, "refused": 0}
        self.commands = dict.fromkeys(VERDICTS, 0)
        self.decisions = Histogram(DECISION_BUCKETS)
        self.cache_hits = 0
        self.masked_values: dict[str, int] = {}
        self.approval_waits: dict[str, int] = {}
        self.approvals_waiting = 0
        self.approval_wait = Histogram(APPROVAL_BUCKETS)
        self.leases: dict[str, int] = {}
        self.upstream_errors: dict[str, int] = {}
        self.pdp_up: Callable[[], bool] = lambda: False
        self.is_draining = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    # -- the calls the runtime makes -----------------------------------------------------

    def session_opened(self) -> None:
        self.sessions["opened"] += 1
        self.sessions_open += 1

    def session_refused(self) -> None:
        self.sessions["refused"] += 1

    def session_closed(self) -> None:
        self.sessions_open -= 1

    def command(self, verdict: str) -> None:
        if verdict in self.commands:
            self.commands[verdict] += 1

    def decided(self, seconds: float) -> None:
        self.decisions.observe(seconds)

    def cache_hit(self) -> None:
        self.cache_hits += 1

    def masked(self, counts: dict[str, int]) -> None:
        """counts: by what masked them ("field:email", "detector:ssn", "derived:<output>").
        A derived rule's output is named by the client's query (its alias), so its values
        are counted under "derived" alone: a client cannot fill the label budget with
        names of its own and push everyone's counts into "other"."""
        for rule, count in counts.items():
            _add(self.masked_values, "derived" if rule.startswith("derived:") else rule, count)

    def approval_wait_started(self) -> None:
        self.approvals_waiting += 1

    def approval_wait_ended(self, outcome: str, seconds: float) -> None:
        self.approvals_waiting -= 1
        self.approval_wait.observe(seconds)
        _add(self.approval_waits, outcome, 1)

    def lease_acquired(self, provider: str) -> None:
        _add(self.leases, provider, 1)

    def lease_released(self, provider: str) -> None:
        _add(self.leases, provider, -1)

    def upstream_error(self, reason: str) -> None:
        _add(self.upstream_errors, reason, 1)

    def watch_pdp(self, up: Callable[[], bool]) -> None:
        """up(): whether the PDP answers now, read at each scrape."""
        self.pdp_up = up

    def draining(self) -> None:
        self.is_draining = True


def _add(counts: dict[str, int], label: str, n: int) -> None:
    """counts[label] += n, the labels bounded in number and length."""
    if label not in counts:
        label = label[:MAX_LABEL_LENGTH] if len(counts) < MAX_LABELS else "other"
    counts[label] = counts.get(label, 0) + n


class _Collector:
    """The families of one ProxyMetrics, built at each scrape."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m, base, names = self.m, self.m.labels, ["connection", "worker"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(PREFIX + name, doc, labels=names)
            family.add_metric(base, value)
            return family

        def counter(name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
            family = CounterMetricFamily(PREFIX + name, doc, labels=[*names, label])
            for key, value in sorted(values.items()):
                family.add_metric([*base, key], value)
            return family

        def histogram(name: str, doc: str, h: Histogram) -> Metric:
            family = HistogramMetricFamily(PREFIX + name, doc, labels=names)
            family.add_metric(base, h.buckets(), h.sum)
            return family

        yield gauge("sessions_open", "Sessions open at this proxy.", m.sessions_open)
        yield counter(
            "sessions", "Sessions asked for, by outcome (opened, refused).", "outcome", m.sessions
        )
        yield counter("commands", "Commands recorded, by the verdict enforced.", "verdict",
                      m.commands)  # fmt: skip
        yield histogram(
            "decision_seconds",
            "Time a command waited for its decision from the PDP (the gRPC hop included).",
            m.decisions,
        )
        hits = CounterMetricFamily(
            PREFIX + "decision_cache_hits",
            "Commands answered from the decision cache (no PDP round trip).",
            labels=names,
        )
        hits.add_metric(base, m.cache_hits)
        yield hits
        yield counter(
            "masked_values",
            "Values masked before they reached the client, by rule.",
            "rule",
            m.masked_values,
        )
        yield counter(
            "approval_waits", "Commands held for a person's approval, by outcome.", "outcome",
            m.approval_waits,
        )  # fmt: skip
        yield gauge("approvals_waiting", "Commands waiting for an approval now.",
                    m.approvals_waiting)  # fmt: skip
        yield histogram(
            "approval_wait_seconds",
            "How long a command waited for its approval decision.",
            m.approval_wait,
        )
        leases = GaugeMetricFamily(
            PREFIX + "credential_leases_live",
            "Upstream credentials held for open sessions (a Vault lease each with provider vault).",
            labels=[*names, "provider"],
        )
        for provider, count in sorted(m.leases.items()):
            leases.add_metric([*base, provider], count)
        yield leases
        yield counter(
            "upstream_errors",
            "Upstream failures: unreachable, closed under a session, credential unavailable.",
            "reason",
            m.upstream_errors,
        )
        yield gauge(
            "pdp_up",
            "1 while this proxy's PDP answers its watch (what /readyz requires).",
            1.0 if m.pdp_up() else 0.0,
        )
        yield gauge(
            "draining",
            "1 once the proxy stopped accepting and drains its sessions.",
            1.0 if m.is_draining else 0.0,
        )
