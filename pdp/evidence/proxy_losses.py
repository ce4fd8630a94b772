"""What `audit verify` can say of sessions whose proxy the PDP lost (a crash, a cut).

A proxy that dies mid-session sends no close: the PDP's reaper closes the session
(`session.close`, reason `proxy_lost`) once the proxy has been silent for the session
timeout, saying when the PDP last heard from it (`last_heard_from_proxy`, its own clock).
What the chain then proves, and no more: each decision the PDP made in the session (the
proxy asked, the PDP recorded its answer before giving it); which of them the proxy's
recorded events name (it ran, or refused, that command); and when the last batch of
events arrived. A decision that let a command through (allow, mask, or any verdict not
enforced: shadow mode) which no recorded event names is a command that may or may not
have run: its event would have been in a batch the proxy never sent. A command the proxy
answered from its own decision cache after its last batch left no record at all, so no
count of them can be given. Events that arrive after the reaper's close (a network cut,
not a crash) are taken and counted here: the proxy was not lost for good, and a command
they claim ran after the close ran on the proxy's cache while the PDP held the session
ended; those delivered from the spool of a process that adopted it (the proxy crashed and
restarted: `delivered_from_spool`, pdp.api.session_keys) are said apart.

Fed the records in seq order (by pdp.evidence.event_times.EventTimes, which reads each
batch once for both); sans-IO, bounded: at most MAX_PENDING decisions are followed at
once (past it they are counted, and the account says it is incomplete).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdp.domain.recordings import CLOCK_SKEW_SECONDS
from pdp.domain.sessions import LAST_HEARD
from pdp.plumbing.rendering import inert
from pdp.plumbing.timestamps import rfc3339

PROXY_LOST = "proxy_lost"
LETS_THROUGH = ("allow", "mask")
MAX_PENDING = 1_000_000
NAMED_SESSIONS = 8
NAMED_DECISIONS = 4


@dataclass
class _Lost:
    seq: int
    closed: float
    heard: float | None
    pending: dict[str, tuple[str, str]]  # decision id -> (verdict, its text's start)
    last_batch: float | None  # when the PDP received the session's last batch before
    after: int = 0  # batches received after the close
    spooled_after: int = 0  # of those, delivered from a dead process's spool (its seal)
    ran_after: int = 0  # commands those claim ran after it


@dataclass
class ProxyLosses:
    """Decisions letting a command through that no recorded event names, per session,
    and the account of the sessions closed because their proxy was lost."""

    # session id -> {decision id -> (verdict, its text's start)}, while the session is open
    pending: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    last_batch: dict[str, float] = field(default_factory=dict)
    lost: dict[str, _Lost] = field(default_factory=dict)
    unclosed: set[str] = field(default_factory=set)  # sessions opened, not closed (yet)
    followed: int = 0
    unfollowed: int = 0  # decisions past MAX_PENDING

    def opened(self, session_id: str, body: dict[str, Any]) -> None:
        if body.get("verdict") in LETS_THROUGH:
            self.unclosed.add(session_id)

    def decided(self, session_id: str, decision_id: str, body: dict[str, Any]) -> None:
        verdict = body.get("verdict")
        if verdict not in LETS_THROUGH and body.get("enforced") is not False:
            return  # (a deny, or an approval asked: its approved re-run is another decision)
        if self.followed >= MAX_PENDING:
            self.unfollowed += 1
            return
        raw = body.get("raw")
        text = raw[:60] if isinstance(raw, str) else ""
        self.pending.setdefault(session_id, {})[decision_id] = (str(verdict), text)
        self.followed += 1

    def named(self, session_id: str, decision_id: str) -> None:
        """An event of the session names the decision: its command was run or refused."""
        pending = self.pending.get(session_id)
        if pending is not None and pending.pop(decision_id, None) is not None:
            self.followed -= 1

    def batch(self, session_id: str, received: float, from_spool: bool = False) -> None:
        lost = self.lost.get(session_id)
        if lost is not None and received > lost.closed:
            lost.after += 1
            lost.spooled_after += from_spool
        self.last_batch[session_id] = received

    def ran(self, session_id: str, when: float, event: dict[str, Any]) -> None:
        """A session event and its claimed time: a command claimed to have run after the
        PDP ended the session as proxy_lost (its proxy, cut off, answering from its cache
        meanwhile: the PDP decided nothing then) is counted."""
        lost = self.lost.get(session_id)
        if (
            lost is not None
            and event.get("type") == "command"
            and when > lost.closed + CLOCK_SKEW_SECONDS
        ):
            lost.ran_after += 1

    def closed(self, seq: int, session_id: str, time: float, body: dict[str, Any]) -> None:
        self.unclosed.discard(session_id)
        if body.get("reason") == PROXY_LOST:
            heard = body.get(LAST_HEARD)
            self.lost[session_id] = _Lost(
                seq,
                time,
                float(heard) if isinstance(heard, int | float) else None,
                self.pending.get(session_id, {}),  # (events may still name them)
                self.last_batch.get(session_id),
            )
            return
        self.followed -= len(self.pending.pop(session_id, {}))
        self.last_batch.pop(session_id, None)

    def line(self) -> str:
        """The report's line on lost proxies ("" when no session's proxy was lost)."""
        if not self.lost:
            return ""
        unrun = sum(len(lost.pending) for lost in self.lost.values())
        said = [
            f"{len(self.lost)} sessions closed by the PDP because it lost their proxy"
            f" (proxy_lost): {unrun} decisions letting a command through are named by no"
            " recorded event: whether those commands ran is unknown (their events were in"
            " batches the proxy never sent); commands the proxy answered from its decision"
            " cache after its last batch left no record at all; and no credential-never-"
            "exposed statement is signed for them (only their proxy's close gives one)"
        ]
        for session_id, lost in list(self.lost.items())[:NAMED_SESSIONS]:
            said.append(self._session(session_id, lost))
        if len(self.lost) > NAMED_SESSIONS:
            said.append("...")
        if self.unfollowed:
            said.append(
                f"{self.unfollowed} decisions past the first {MAX_PENDING} followed at once"
                " were not followed: the count above may be short"
            )
        return "; ".join(said)

    @staticmethod
    def _session(session_id: str, lost: _Lost) -> str:
        heard = (
            rfc3339(lost.heard)
            if lost.heard is not None
            else "unknown (not heard since the PDP found the session again)"
        )
        batch = rfc3339(lost.last_batch) if lost.last_batch is not None else "none"
        where = (
            f"session {inert(session_id[:64])} (closed at seq {lost.seq},"
            f" {rfc3339(lost.closed)}; proxy last heard {heard}; last event batch"
            f" received {batch}"
        )
        if lost.after > lost.spooled_after:
            where += (
                f"; {lost.after - lost.spooled_after} batches arrived after the close:"
                " not lost for good"
            )
        if lost.spooled_after:
            where += (
                f"; {lost.spooled_after} batches arrived after the close from the spool of"
                " a proxy process that did not open the session (under the dead one's seal)"
            )
        if lost.ran_after:
            where += (
                f"; {lost.ran_after} commands claimed to have run after the close, which the"
                " PDP decided nothing of then (answered from the proxy's cache)"
            )
        unrun = [
            f"{inert(d[:40])} {verdict} {inert(text)!r}"
            for d, (verdict, text) in list(lost.pending.items())[:NAMED_DECISIONS]
        ]
        if not unrun:
            return where + "): every decision letting a command through is named by an event"
        more = ", ..." if len(lost.pending) > NAMED_DECISIONS else ""
        return where + f"): {len(lost.pending)} unrecorded: " + ", ".join(unrun) + more
