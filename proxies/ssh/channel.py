"""One SSH session channel through the proxy: its request decided, then relayed.

Owns a channel's life once a client opened it on an authenticated connection
(proxies/ssh/proxy.py): the request (exec, shell, subsystem; a terminal or not) decided
before anything reaches the upstream — denied: the reason on stderr and exit status 1;
require_approval: the request id on stderr while it waits, withdrawn by Ctrl-C (\\x03
under a terminal), an INT signal, a break or the client going away — then, when
allowed, a channel of the same request on the session's upstream connection, relayed
both ways with backpressure (each side's pause_writing stops reading the other), its exit
status or signal passed back. Output of a `mask` verdict passes the detectors
(stream.MaskedOutput); a shell or a command with a terminal is recorded as asciicast
(stream.Cast) in the session's events, what is typed at a password prompt left out
(portcullis/password_prompts.py); the channel's command event says how it ended, and
names the variables the client's env requests asked for, none of them passed upstream.
A command the proxy must end (its client left, its output cannot be masked, it ran past
the policy's wall-clock limit, ssh_exec_seconds) is ended by sshd's KILL, or, on an
account sshd sends no signal to (root), by the proxy itself (reaper.py). A shell has its
limit too (ssh_shell_seconds, which bounds a subsystem's, an SFTP session's, as well)
and, on any account, runs after the proxy's report line, so that what it leaves running
(its jobs) is reaped when it ends; a reap that fails is in the channel's event and ends
the session (ClientConnection.reap_failed). A channel whose
client takes packets smaller than MIN_CLIENT_PACKET is not relayed to (denied as a policy
limit the proxy cannot keep is): its output would go a few bytes a packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import asyncssh

from portcullis.events import longer_than, truncation_facts
from portcullis.masking import Masker
from portcullis.password_prompts import PROMPT_TAIL, HeldFrames
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.pdp_client import Ruling, withdrawn_ruling
from proxies.ssh.reaper import SHELL_LINE, WRAPPED, WRAPPED_SHELL, SessionReport, nonce, wrapped
from proxies.ssh.sftp import SftpRelay
from proxies.ssh.stream import Cast, MaskedOutput, Unreadable, terminal_size
from proxies.ssh.upstream import (
    GatedChannel,
    Request,
    close_ahead,
    open_session,
    request_on,
    terminal_refused,
)

if TYPE_CHECKING:
    from proxies.ssh.proxy import ClientConnection

log = logging.getLogger("portcullis.ssh")

QUIET_FLUSH = 0.05  # an interactive upstream quiet this long: held output goes out
CAST_BATCH = 256  # asciicast events per recorded event
CAST_BATCH_BYTES = 8 * 1024  # recorded text per event: many fit one RecordEvents call
CAST_EVERY = 1.0  # seconds between recorded asciicast batches
MAX_PENDING_STDIN = 1024 * 1024  # stdin held while a channel is decided
# of the client's env requests (none passed upstream), how many names a command's event
# keeps, and how much of each
MAX_ENV_NAMES = 32
MAX_ENV_NAME = 64
# of each output chunk, what the password prompt rule reads: a screen drawn by placing the
# cursor (tmux, pinentry-curses) may draw the prompt's row before the rest of a large
# terminal's rows (password_prompts_grid.GRID_READ)
SCREEN_READ = 16 * PROMPT_TAIL
# what a channel's command event keeps of its command line (the decision read it whole):
# past this, its start, its size and SHA-256 (portcullis.events.truncation_facts)
RECORDED_COMMAND = 8 * 1024
# an exec's request is answered once decided, or this long after it came, if sooner
ANSWER_WITHIN = 0.05
# an exec refused as its request is answered: the refusal sent once the client sent its
# input's EOF, or this long after the answer (Channel._answered_first)
DENIAL_AFTER = 0.05
CANCEL_SIGNALS = frozenset({"INT", "TERM", "HUP", "QUIT", "KILL"})
# a command the proxy must end on an upstream whose sshd will not signal it (root): how
# long its session's report may take to come (reaper.py) before its channel is closed
# anyway, the command's end then not assured (logged)
REPORT_TIMEOUT = 15.0
# the policy's wall-clock limit of an exec (session.open's session_settings), in seconds;
# 0 or absent: none. Past it the command is ended, the client told, exit status 124
# (timeout(1)'s), and its command event says why.
EXEC_SECONDS = "ssh_exec_seconds"
# and how many channels a session may hold open at once (0 or absent: no cap)
MAX_CHANNELS = "ssh_max_channels"
# and the wall-clock limit of an interactive shell (ssh.shell), as EXEC_SECONDS's
SHELL_SECONDS = "ssh_shell_seconds"
TIMED_OUT_STATUS = 124
TERMINAL_REFUSED = "a command with a terminal is interactive, as a shell is: "
# a terminal type the upstream sets as TERM for what runs there: a terminfo name, nothing
# else (no path, no shell metacharacter, no control character)
TERM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
# the terminal mode ECHO (RFC 4254 section 8, opcode 53): the upstream's terminal starts
# with it on, whatever the client's pty-req said. With ECHO off there the account's shell
# echoed nothing typed (readline honours it): the recording's output, which `portcullis
# replay` plays, showed prompts and results and no command. A program of the shell may
# still turn it off (a password prompt; `stty -echo`, typed and so seen)
ECHO_MODE = 53
# the least maximum packet size a client's channel may ask of the proxy: asyncssh sends
# what is relayed in packets of at most that size, each framed, encrypted and written
# apart in one run of the event loop, so a channel opened with a maximum of 1 byte had an
# allowed `cat /var/log/x` of 200 KB sent as 200,000 packets (some 20 s of the loop every
# other session of the proxy waits on). OpenSSH, PuTTY, libssh, Paramiko and Go ask 16-32 KiB
MIN_CLIENT_PACKET = 1024


# asyncssh answers a channel request once its handler returns True or False; None leaves
# it unanswered until _report_response, the path asyncssh's own deferred requests take (X11,
# agent forwarding): an exec's Decide is written before its answer (Channel.exec_requested)
DEFERRED_ANSWER = callable(getattr(asyncssh.SSHServerChannel, "_report_response", None))

_WITHDRAWALS: set[asyncio.Future[bool]] = set()  # withdrawals on their way (_withdrawn)
# the request an approval wait's message names (ProxySession.wait_if_held's words)
WAITING_FOR = re.compile(r"waiting for request (\S+)")

READ_SUBSYSTEMS = frozenset({"sftp"})  # subsystems the proxy reads (decides request by request)
UNREAD = (
    "relayed unread: the proxy cannot read this subsystem; its bytes were not decided or masked"
)


def _exec_details(
    kind: str,
    exit_status: int | None,
    out: int,
    err: int,
    inp: int,
    error: str = "",
    unread: bool = False,
) -> dict[str, Any]:
    """A channel's command event details (pdp.domain.timeline.ssh_exec_details's shape); a
    subsystem relayed that the proxy does not read (allowed by name) says so in `unread`."""
    details: dict[str, Any] = {
        "kind": "ssh.shell" if kind == "ssh.shell" else "ssh.exec",
        "exit_status": exit_status,
        "stdout_bytes": out,
        "stderr_bytes": err,
        "stdin_bytes": inp,
    }
    if kind == "ssh.subsystem":
        details["subsystem"] = True
        if unread:
            details["unread"] = UNREAD
    if error:
        details["error"] = error
    return details


def _exact_only(raw: str) -> None:
    """An SSH command has no shape: only the same command line (with the same attributes)
    of the same session reuses an answer, and only when the policy says it may (its cache
    hint for `ssh.exec`); anything else is asked of the PDP."""
    return None


class Channel(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """One session channel: its request decided, then relayed to an upstream channel."""

    _numbers = 0

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.chan: Any = None
        self.kind = ""
        self.raw = ""
        self.term = ""
        self.size = (80, 24, 0, 0)
        self.modes: dict[int, int] = {}
        self.up: Any = None  # the upstream channel, once open
        self.ruling: Ruling | None = None
        self.stdout: ClientOutput | None = None
        self.stderr: ClientOutput | None = None
        self.masks: dict[str, MaskedOutput] = {}
        self.cast: Cast | None = None
        self.counts = Counter[str]()
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str] | None = None
        self.waiting = False
        # the client gave up on the decision (Ctrl-C, a signal, a break, gone): why, for
        # the request's withdrawal; and this channel's approval wait under way (its own:
        # a session's channels wait each for its own request, Channel.wait_if_held)
        self.given_up = ""
        self._held: asyncio.Future[Ruling] | None = None
        self._approval = ""  # the request it waits for, once announced
        self.relay: SftpRelay | None = None  # an allowed sftp subsystem: decided per request
        self._typed: MaskedOutput | None = None  # masks typed input for the recording
        # leaves out of the recording what is typed at a password prompt
        # (portcullis/password_prompts.py), and a line typed ahead of its prompt with it
        self._secrets = HeldFrames()
        self.withheld = ""  # why the output stopped going to the client (the mask cannot read it)
        # an exec on an account sshd will not signal (root): its session's report (reaper.py)
        self.report: SessionReport | None = None
        self._reap_wanted = False  # ended before its session was reported: reaped once it is
        self._reaped = False
        self._reaping: asyncio.Future[str] | None = None  # the reap: "" once done, else why not
        self._reap_outcome: str | None = None  # its outcome, once awaited (_reaped_or_why)
        self.ended_by = ""  # why the proxy ended the command (its time limit)
        self._limit: asyncio.TimerHandle | None = None
        self._stdin: list[bytes] = []
        self._stdin_eof = False
        self._upstream_eof = False
        self._answered = False  # the client was told how the command ended
        self._gone = False
        self._quiet: asyncio.TimerHandle | None = None
        self._cast_timer: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        # the upstream channel: opened ahead (proxies/ssh/upstream.py), its request sent
        # once the gate has it (allowed), or never (None: denied, or the client gone)
        self._gate: asyncio.Future[Request | None] = loop.create_future()
        self._opening: asyncio.Future[Any] | None = None
        # or, when the upstream connection was up as the client opened its channel: the
        # upstream channel opened ahead, taken then; its request goes in _serve, if allowed
        self._ahead: GatedChannel | None = None
        self._upstream_done: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self._running = False  # asyncssh started the session (a request was accepted)
        self._accepted = True  # the client's request answered (False: exec, answer deferred)
        self._answer_timer: asyncio.TimerHandle | None = None  # answers it at the latest
        self._turn: asyncio.Future[None] | None = None  # a refusal waits for the client's EOF
        Channel._numbers += 1
        self.number = Channel._numbers
        client.channels.add(self)

    # -- requests (asyncssh calls these before session_started) ---------------------------

    def connection_made(self, chan: Any) -> None:
        self.chan = chan
        self.stdout = self.client.output(self._write)
        self.stderr = self.client.output(self._write_stderr)
        if self.client.upstream is not None and self.client.session is not None:
            # the upstream connection is up: its channel was opened ahead (or opens now)
            # while the client sends its request and it is decided (it carries nothing
            # until allowed); with an asyncssh upstream.py does not know, a task opens it
            self._ahead = self.client.channel_ahead()
            if self._ahead is None:
                self._opening = asyncio.ensure_future(self._open_upstream())

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        if self.kind:
            # a terminal asked for after the channel's request (exec, shell, subsystem) is
            # refused: the request is decided with or without one (_decided), and a
            # terminal added while that decision is asked would reach the upstream undecided
            # (`journalctl` under a pager: less's `!sh`)
            return False
        if term_type and not TERM_NAME.fullmatch(term_type):
            log.info("pty-req refused: a terminal type that is not a terminfo name")
            return False
        self.term = term_type or "xterm"
        self.size = terminal_size(*term_size)
        self.modes = {**dict(term_modes), ECHO_MODE: 1}
        return True

    def shell_requested(self) -> bool:
        self.kind, self.raw = "ssh.shell", ""
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self.raw = "ssh.exec", command
        if not DEFERRED_ANSWER or self.chan is None:
            return True
        # the exec's Decide goes first, asyncssh's answer (success) to the client after
        # it: the channel's task starts now, and the answer is written once the exec is
        # decided and, if allowed, written upstream (_serve), or before the channel writes
        # anything else to the client (a denial, an approval's wait), or ANSWER_WITHIN
        # after the request, whichever comes first (a client that waits for its answer
        # is not left without one while a slow decision is asked). Not while a Decide of
        # the usual length is asked: its write here, and the client's reading of it, took
        # CPU from the PDP's and gRPC's threads answering it
        self._accepted = False
        self._start()
        loop = asyncio.get_running_loop()
        self._answer_timer = loop.call_later(ANSWER_WITHIN, self._accept)
        return None  # type: ignore[return-value]  # answered by _accept

    def subsystem_requested(self, subsystem: str) -> bool:
        self.kind, self.raw = "ssh.subsystem", subsystem
        return True

    def session_started(self) -> None:
        if not self._running:  # (an exec's started when it was requested)
            self._start()

    def _start(self) -> None:
        self._running = True
        task = asyncio.ensure_future(self._run())
        self.client._background.add(task)
        task.add_done_callback(self.client._background.discard)

    async def _answered_first(self) -> None:
        """An exec refused before its request was answered: answered now, and the refusal
        (stderr, exit status, close) sent once the client sent its input's EOF, or went
        away, or DENIAL_AFTER later. A client that writes its input once its request is
        answered (asyncssh's run(input=...)) finds the channel open to write it, as it
        did when the answer went ahead of the decision, not the answer and the close in
        one read (asyncssh: BrokenPipeError instead of the exit status)."""
        if self._accepted or self._gone or self._stdin_eof:
            self._accept()
            return
        self._accept()
        self._turn = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DENIAL_AFTER):
                await self._turn

    def _client_turned(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._turn.set_result(None)

    def _accept(self) -> None:
        """The client's exec request answered, if it was not: asyncssh sends the success,
        calls session_started (running already) and takes the client's next requests."""
        if self._accepted:
            return
        self._accepted = True
        if self._answer_timer is not None:
            self._answer_timer.cancel()
        with contextlib.suppress(Exception):  # a channel gone meanwhile: nothing to answer
            self.chan._report_response(True)

    # what the channel writes to the client goes after the answer to its request

    def _write(self, data: bytes) -> None:
        if not self._accepted:
            self._accept()
        self.chan.write(data)

    def _write_stderr(self, data: bytes) -> None:
        if not self._accepted:
            self._accept()
        self.chan.write_stderr(data)

    # -- client → upstream -----------------------------------------------------------------

    def data_received(self, data: bytes, datatype: Any) -> None:
        # Ctrl-C is \x03 only under a terminal: elsewhere it is a byte of the data (an
        # SFTP INIT for version 3 holds one)
        if self.waiting and self.term and b"\x03" in data:
            self._give_up("the client cancelled while waiting (Ctrl-C)")
            return
        self.counts["stdin_bytes"] += len(data)
        self._record_input(data)
        if self.relay is not None:
            self.relay.from_client(data)
            return
        if self.up is not None:
            self.up.write(data)
            return
        self._stdin.append(data)
        if sum(map(len, self._stdin)) > MAX_PENDING_STDIN and self.chan is not None:
            self.chan.pause_reading()

    def eof_received(self) -> bool:
        if self.relay is not None:
            self.relay.client_eof()
        elif self.up is not None:
            self.up.write_eof()
        else:
            self._stdin_eof = True
            self._client_turned()
        return True

    def break_received(self, msec: int) -> bool:
        if self.waiting:
            self._give_up("the client cancelled while waiting (a break)")
        elif self.up is not None:
            self.up.send_break(msec)
        return True

    def signal_received(self, signal_name: str) -> None:
        if self.waiting and signal_name in CANCEL_SIGNALS:
            self._give_up(f"the client cancelled while waiting (signal {signal_name})")
        elif self.up is not None:
            self.up.send_signal(signal_name)

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        # bounded as the pty-req's size is: the upstream draws for the size recorded
        self.size = terminal_size(width, height, pixwidth, pixheight)
        if self.cast is not None:
            self.cast.resize(time.time(), self.size[0], self.size[1])
        if self.up is not None:
            self.up.change_terminal_size(*self.size)

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_gone()

    def client_gone(self) -> None:
        """The client's channel or connection went away: stop waiting, end the upstream."""
        self._gone = True
        self._client_turned()
        self._open_upstream_for(None)
        if not self._running:
            # closed before any request was accepted (its pty-req refused, say): _run
            # never starts, so the channel ends here, or a drain would wait for it forever
            self.client.channels.discard(self)
            self.client.retire(self.stdout, self.stderr)
            if not self.finished.done():
                self.finished.set_result(None)
            return
        if self.waiting or self.relay is not None:  # a relayed SFTP request may be waiting
            self._give_up("the client went away while waiting")
        self._end_upstream()

    def _give_up(self, why: str) -> None:
        """The client gave up on this channel's decision: its approval wait, if one is under
        way, ends (and its request is withdrawn, wait_if_held); a request still being
        decided is withdrawn as soon as it is known. Only this channel's: another channel
        of the session waits on."""
        self.given_up = self.given_up or why
        if self._held is not None and self._approval:
            self._held.cancel()

    # -- upstream → client -------------------------------------------------------------------

    def upstream_data(self, data: bytes, stderr: bool) -> None:
        if self.relay is not None and not stderr:
            self.relay.from_upstream(data)
            return
        report = self.report
        # the report comes on stderr, or on the terminal (stdout) when the channel has one
        if report is not None and report.waiting and stderr != bool(self.term):
            data = report.feed(data)
            if not report.waiting:
                self._report_read()
        if self.withheld or not data:
            return
        stream = "stderr_bytes" if stderr else "stdout_bytes"
        mask = self.masks.get(stream)
        if mask is not None:
            try:
                data = mask.feed(data)
            except Unreadable as exc:
                self._withhold(str(exc))
                return
            if mask.holding and self.cast is not None:
                self._flush_when_quiet()
        self._send(data, stderr)

    def _withhold(self, why: str) -> None:
        """Output the mask cannot read: nothing more of it goes to the client, the client is
        told, and the upstream's command is ended (its channel closed); exit status 1."""
        self.withheld = f"output withheld: {why}"
        self.say(f"portcullis: {self.withheld}")
        self._end_upstream()
        self.exit_status, self.exit_signal = 1, None

    def _report_read(self) -> None:
        """The session's report was read (a command ended before it was, reaped now), or
        it will not come: the command, which the proxy could then not end, is ended now
        (its channel closed), the client told."""
        assert self.report is not None
        if self.report.sid is not None:
            if self._reap_wanted:
                self._end_upstream()
            return
        log.warning("ssh channel: %s; its command is ended now", self.report.failed)
        if not self.withheld and not self.ended_by:
            self.ended_by = self.report.failed
            self.say(f"portcullis: {self.report.failed}: the command is ended")
        self._reap_wanted = False
        self._close_upstream()

    def _end_upstream(self) -> None:
        """The upstream channel closed, and the command it runs ended with it if it has not
        ended yet: sshd leaves a command without a terminal running when its channel or
        connection closes (OpenSSH bug 396), and one whose output goes nowhere it would
        write to (`free -s 1 >/dev/null`, `journalctl -f >/dev/null`) ran on after the
        client left, past its session and its token. KILL is sent first, which sshd sends
        to the command's process group (killpg of the session's shell): the shell and
        what it runs, in the background too while the shell runs (`nohup x &`). Not to a
        subsystem (sshd refuses: an SFTP server ends with its channel) nor once the
        upstream said how the command ended (nothing of its own left to signal)."""
        up = self.up
        if up is None:
            return
        running = self.exit_status is None and self.exit_signal is None
        if self.kind != "ssh.subsystem" and running and self.report is not None:
            # sshd signals no session of this account: the proxy ends the command's session
            # itself (reaper.py), once it knows which it is
            if self.report.sid is None and self.report.waiting:
                if not self._reap_wanted:
                    self._reap_wanted = True
                    asyncio.get_running_loop().call_later(REPORT_TIMEOUT, self._unreported)
                return
            if self.report.sid is not None and not self._reaped:
                self._reap_session(self.report)
        elif self.kind != "ssh.subsystem" and running:
            with contextlib.suppress(Exception):
                up.send_signal("KILL")
        self._close_upstream()

    def _reap_session(self, report: SessionReport) -> None:
        """Every process of this channel's upstream session and audit session (as
        `report`ed) ended by the proxy's reap (reaper.py), once; the channel's event waits
        for its outcome."""
        if self._reaped or report.sid is None:
            return
        self._reaped = True
        self._reaping = self.client.reap(report.sid, report.audit, report.shared)
        # a reap that failed leaves the command running, its channel unclosed by sshd (its
        # close waits for the command): the channel ends without waiting for it, its
        # failure recorded (_serve)
        self._reaping.add_done_callback(self._reap_done)

    def _reap_done(self, reaping: asyncio.Future[str]) -> None:
        if reaping.cancelled() or reaping.exception() is not None or reaping.result():
            self.upstream_closed()

    def _close_upstream(self) -> None:
        if self._limit is not None:
            self._limit.cancel()
        if self.up is not None:
            self.up.close()

    def _unreported(self) -> None:
        if self._reap_wanted and self.report is not None and self.report.waiting:
            log.warning(
                "ssh channel: no session report from the upstream within %.0f s: its command"
                " may run on there",
                REPORT_TIMEOUT,
            )
            self._reap_wanted = False
            self._close_upstream()

    def _time_up(self, seconds: float) -> None:
        """The exec (or shell, or subsystem: an SFTP session, under the shell's limit) ran
        past the policy's wall-clock limit: ended, the client told."""
        if self._upstream_done.done() or self.ended_by or self.withheld:
            return
        what, key = {
            "ssh.shell": ("shell", SHELL_SECONDS),
            "ssh.subsystem": ("subsystem", SHELL_SECONDS),
        }.get(self.kind, ("command", EXEC_SECONDS))
        self.ended_by = f"the {what} ran past its time limit of {seconds:g} s ({key})"
        self.say(f"portcullis: {self.ended_by}; it is ended")
        self._flush_masks()
        self._end_upstream()
        self.exit_status, self.exit_signal = TIMED_OUT_STATUS, None

    def _send(self, data: bytes, stderr: bool) -> None:
        if not data or self._gone:
            return
        self.counts["stderr_bytes" if stderr else "stdout_bytes"] += len(data)
        if self.cast is not None:
            # (its end is all the prompt rule reads, but while a line typed ahead waits for
            # a prompt: a character cut there is replaced)
            shown = data if self._secrets.holding else data[-SCREEN_READ:]
            text = shown.decode("utf-8", "replace")
            self._cast_frames(self._secrets.output(time.time(), data.decode("latin-1"), text))
        out = self.stderr if stderr else self.stdout
        assert out is not None
        out.write(data)

    def relay_to_client(self, data: bytes) -> None:
        """Whole SFTP packets from the relay (the upstream's replies, the proxy's answers)."""
        self._send(data, False)

    def _flush_masks(self, final: bool = True) -> None:
        """What the masks hold, sent: all of it at the end (final), or, once an interactive
        upstream went quiet, all but a tail that may still become a value (stream.py)."""
        for stream, mask in self.masks.items():
            if self.withheld:
                return
            try:
                self._send(mask.flush(final), stream == "stderr_bytes")
            except Unreadable as exc:
                self._withhold(str(exc))

    def _flush_when_quiet(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
        self._quiet = asyncio.get_running_loop().call_later(QUIET_FLUSH, self._flush_masks, False)

    def upstream_eof(self) -> None:
        if self.report is not None and self.report.waiting:
            held = self.report.end()  # the command's own output, had it nothing after it
            if held:
                self.upstream_data(held, not self.term)
        self._flush_masks()
        if not self._gone and self.chan is not None:
            with contextlib.suppress(Exception):
                self._accept()
                self.chan.write_eof()
        self._upstream_eof = True
        self.upstream_ended()

    def upstream_ended(self) -> None:
        """The upstream has said all it will say of a command once its output ended (EOF)
        and it told how the command ended (exit status or signal): the client is answered
        then, not when the upstream's close follows (sshd sends it after reaping the
        process, milliseconds later), and from here, before the upstream's next packets
        (its close, in the same read) and the channel's recording (_serve, right after). A
        subsystem (an SFTP relay) waits for the close."""
        if (
            self._upstream_eof
            and (self.exit_status is not None or self.exit_signal is not None)
            and self.kind != "ssh.subsystem"
            and not self._upstream_done.done()
        ):
            self._answer(self.exit_status)
            self.upstream_closed()

    def upstream_closed(self) -> None:
        if not self._upstream_done.done():
            self._upstream_done.set_result(None)

    def say(self, text: str) -> None:
        """A line from Portcullis on stderr (CRLF under a terminal)."""
        end = "\r\n" if self.term else "\n"
        if self.stderr is not None and not self._gone:
            self.stderr.write((text + end).encode())
            self.counts["stderr_bytes"] += len(text) + len(end)

    # -- the channel's life -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception:
            log.exception("ssh channel failed")
            self._open_upstream_for(None)
            self._end(1, "the proxy failed")
        finally:
            self.client.channels.discard(self)
            self.client.retire(self.stdout, self.stderr)
            if not self.finished.done():
                self.finished.set_result(None)

    def _attributes(self) -> dict[str, Any]:
        if self.kind == "ssh.shell" or (self.kind == "ssh.exec" and self.term):
            cols, rows = self.size[0], self.size[1]
            base = {"term": self.term, "cols": cols, "rows": rows} if self.term else {}
            return base if self.kind == "ssh.shell" else {"pty": True, **base}
        if self.kind == "ssh.subsystem":
            return {"subsystem": self.raw}
        return {}

    async def _serve(self) -> None:
        session = await self.client.ready()
        if session is None or not self.kind:
            self._open_upstream_for(None)
            self._end(1, "no session")
            return
        # the upstream channel opens (if it did not when the client opened its channel)
        # while the request is decided; its request goes only once allowed
        if self._opening is None and self._ahead is None:
            self._opening = asyncio.ensure_future(self._open_upstream())
        opening = self._opening
        spare = self._ahead is not None  # this channel took one: the next is opened after
        allowed = False
        request: Request | None = None
        try:
            self.waiting = True
            try:
                ruling = await self._decided(session)
            finally:
                self.waiting = False
            self.ruling = ruling
            allowed = ruling.verdict.allowed and not self._gone
            sftp = self.kind == "ssh.subsystem" and self.raw in READ_SUBSYSTEMS
            if allowed:
                why = small_packets(self.chan) or self.client.unusable_limit(self.kind)
                if not why and not sftp:
                    why = _unenforceable(ruling)
                if why:
                    ruling = Ruling(Verdict.deny(why), ruling.decision_id, ruling.policy_revision)
                    self.ruling, allowed = ruling, False
                elif not sftp:
                    self._masking(ruling)  # an SFTP stream is packets: its relay decides each
        finally:
            # the upstream channel's request goes now, or never
            request = self._request() if allowed else None
            self._open_upstream_for(request)
        if spare:
            # the next channel's upstream open goes once this request is answered and, if
            # allowed, on its way upstream (call_soon: after request_on below wrote it);
            # not while its Decide is asked: it would go first and delay the Decide's write
            self.client.spare_soon()
        if not allowed or request is None:
            await self._answered_first()
            self.say(f"portcullis: denied: {'; '.join(ruling.verdict.reasons)}")
            session.record_command(_recorded_command(self.raw), ruling, **self._details(1))
            self._end(1)
            return
        # the client's exec answered once its request went upstream (call_soon: after
        # request_on below wrote it), while the upstream runs it
        asyncio.get_running_loop().call_soon(self._accept)
        try:
            if self._ahead is not None:  # opened ahead: its request is sent from here
                ahead, self._ahead = self._ahead, None
                self.up = await request_on(ahead, request)
            else:
                assert opening is not None
                self.up = await opening
        except (TimeoutError, OSError, asyncssh.Error, CredentialUnavailable) as exc:
            why = _upstream_error(exc)
            session.runtime.metrics.upstream_error("upstream_unavailable")
            self.say(f"portcullis: the upstream is unavailable: {why}")
            session.record_command(_recorded_command(self.raw), ruling, **self._details(1, why))
            self._end(1)
            return
        if self._gone:
            self._end_upstream()
        limit = self.client.time_limit(self.kind)
        if limit > 0 and not self._gone:
            self._limit = asyncio.get_running_loop().call_later(limit, self._time_up, limit)
        if self.term and terminal_refused(self.up):
            self.say("portcullis: the upstream refused a terminal: the command runs without one")
        if sftp:
            self.relay = SftpRelay(self, session)
        elif self.kind == "ssh.shell" or self.term:
            self.cast = Cast(self.size[0], self.size[1], self.term, time.time())
        self._catch_up()
        try:
            await self._upstream_done
        finally:
            if self._limit is not None:
                self._limit.cancel()
            if self.relay is not None:
                self.relay.finish()
        report = self.report
        if self.kind == "ssh.shell" and report is not None and report.sid is not None:
            # a shell's session ends with it: what it left running (`nohup x &`, a job
            # in the background) ended as the proxy ends a command (reaper.py)
            self._reap_session(report)
        reap_failed = await self._reaped_or_why()
        self._flush_masks()
        if self.cast is not None:
            self._cast_frames(self._secrets.close())
        if self._typed is not None and self.cast is not None:
            self.cast.input(time.time(), self._typed.flush())
        self._record_cast()
        status = self.exit_status
        if self.relay is not None and self.relay.failed:
            status = 1  # the proxy ended the SFTP stream, whatever the upstream said
            self.exit_signal = None
        session.record_command(
            _recorded_command(self.raw),
            ruling,
            **self._details(status, self.withheld or self.ended_by),
        )
        if reap_failed:
            self.client.reap_failed(self.number, reap_failed)
        counts = Counter[str]()
        for mask in self.masks.values():
            counts.update(mask.counts)
        if counts:
            session.record_masking(dict(counts), ruling.decision_id)
        self._answer(status)

    async def _reaped_or_why(self) -> str:
        """Once the channel's reap (if one was begun) is done: "" if it ended the session's
        processes (or none was needed), else why it did not (they may run on upstream)."""
        reaping = self._reaping
        if reaping is None:
            return ""
        try:
            self._reap_outcome = await asyncio.shield(reaping)
        except Exception as exc:  # (the reap reports its own failures: not expected)
            self._reap_outcome = f"the reap failed: {type(exc).__name__}"
        return self._reap_outcome

    def _answer(self, status: int | None) -> None:
        """The client told how the command ended — the upstream's signal, else its exit
        status (255: none came) — once."""
        if self._answered:
            return
        self._answered = True
        if self.exit_signal is not None and not self._gone:
            name, core, message = self.exit_signal
            self._accept()
            with contextlib.suppress(Exception):
                self.chan.exit_with_signal(name, core, message)
            return
        self._end(status if status is not None else 255)

    async def _open_upstream(self) -> Any:
        """The upstream channel for this channel, its request sent once the gate has it."""
        upstream = await self.client.connect_upstream()
        return await open_session(upstream, self._gate, self.client.session_ahead())

    def _request(self) -> Request:
        """The client's request, as decided, for the upstream channel: an exec on an
        account sshd sends no signal to (root) after the proxy's line reporting its session
        (reaper.py), so the proxy can end it."""
        command = self.raw if self.kind == "ssh.exec" else None
        shell = self.kind == "ssh.shell" and self.client.shell_reaped()
        if shell or (command is not None and self.client.signals_refused()):
            # a shell, on any account: asked as an exec of the account's login shell after
            # the report, and its session reaped at its end (reaper.SHELL_LINE)
            tag = nonce()
            self.report = SessionReport(tag)
            command = wrapped(SHELL_LINE if shell else self.raw, tag)
        return Request(
            lambda: UpstreamChannel(self),
            command=command,
            subsystem=self.raw if self.kind == "ssh.subsystem" else None,
            term_type=self.term or None,
            term_size=self.size if self.term else None,
            term_modes=self.modes or None,
        )

    def _open_upstream_for(self, request: Request | None) -> None:
        """The decision, told once to the upstream channel's opening: its request, or None
        (it closes having sent the open alone; whatever it ends with is no one's error)."""
        if not self._gate.done():
            self._gate.set_result(request)
        if request is None and self._opening is not None:
            _settle(self._opening)
        if request is None and self._ahead is not None:
            close_ahead(self._ahead)  # closed having sent the open alone
            self._ahead = None

    async def _decided(self, session: Any) -> Ruling:
        """The channel's request decided (and approved, when a person must). A command run
        with a terminal (`ssh -t host journalctl`) is interactive: a pager or an editor on
        a terminal runs anything typed into it (less's `!sh`), so it needs what a shell
        needs (an ssh.shell decision, with the terminal) besides its own. Both are asked
        in one round trip (queued in the same turn of the loop, they leave in one
        DecideStream message) and each is judged as before, as what it is: the command
        runs only if both allow it (the command's verdict, its mask, is what is enforced)."""
        attributes = self._attributes()
        if self.kind != "ssh.exec" or not self.term:
            return await self.decide_or_wait(session, self.kind, self.raw, attributes)
        terminal = {"term": self.term, "cols": self.size[0], "rows": self.size[1]}
        # the command's Decide is queued now (inline), the terminal's in its task's first
        # step, next turn of the loop, ahead of the decision stream's writer woken by the
        # first: both leave in the writer's next message, the command's (the PDP's longer
        # decision: its line parsed) first
        gate_asked = asyncio.ensure_future(session.decide("ssh.shell", "", terminal, None))
        try:
            command = await session.decide(self.kind, self.raw, attributes, _exact_only)
            gate = await gate_asked
        finally:
            if not gate_asked.done():
                gate_asked.cancel()
        if not (gate.verdict.allowed and command.verdict.allowed):
            # asked in sequence, what did not allow made the session's next command asked
            # of the PDP (the breaker's pause: ProxySession.ask_next); whichever answer came
            # last must not lift that
            session.ask_next = True
        held = gate.kind is VerdictKind.REQUIRE_APPROVAL
        gate = await self.wait_if_held(session, gate, "ssh.shell", "", terminal)
        if not gate.verdict.allowed:
            if not self._shared(command.approval_id):
                await _withdraw(session, command, "the command's terminal was refused")
            return Ruling(
                Verdict.deny(TERMINAL_REFUSED + "; ".join(gate.verdict.reasons)),
                gate.decision_id,
                gate.policy_revision,
            )
        if held and command.kind is not VerdictKind.REQUIRE_APPROVAL:
            # decided before a person approved the terminal: asked again, as it was when
            # the two were asked in sequence (a pending request of its own is waited for,
            # and decided again once approved)
            return await self.decide_or_wait(session, self.kind, self.raw, attributes)
        return await self.wait_if_held(session, command, self.kind, self.raw, attributes)

    async def decide_or_wait(
        self,
        session: Any,
        kind: str,
        raw: str,
        attributes: dict[str, Any] | None,
        tell: Any = None,
        shape_of: Any = _exact_only,
    ) -> Ruling:
        """session.decide_or_wait, its approval wait this channel's own (_held_by). The
        decision itself is asked on the channel's own way: while the PDP decides there is
        no wait to stop (_held_by stops one only once its request is known), so only a
        request to approve is held as a task of its own (wait_if_held), and a client that
        gave up while it was decided has it withdrawn at once."""
        known = session.ruling_now(kind, raw, shape_of, attributes)
        if known is not None:
            # answered without the PDP (a verdict the policy lets be reused; a session that
            # can run nothing more): no wait to hold, so no task of its own on the way
            return known
        ruling = await session.decide(kind, raw, attributes, shape_of)
        return await self.wait_if_held(session, ruling, kind, raw, attributes, tell)

    async def wait_if_held(
        self,
        session: Any,
        ruling: Ruling,
        kind: str,
        raw: str,
        attributes: dict[str, Any] | None,
        tell: Any = None,
    ) -> Ruling:
        """session.wait_if_held, its approval wait this channel's own (_held_by); a client
        that gave up while the command was decided has the request withdrawn at once."""
        if ruling.kind is not VerdictKind.REQUIRE_APPROVAL or not ruling.approval_id:
            return ruling
        if self.given_up:
            kept = self._shared(ruling.approval_id)
            return await _withdrawn(session, ruling.approval_id, ruling, self.given_up, kept)
        return await self._held_by(
            session,
            ruling.approval_id,
            session.wait_if_held(ruling, kind, raw, attributes, self._announcing(tell)),
        )

    async def _held_by(self, session: Any, approval_id: str, deciding: Any) -> Ruling:
        """A decision (and a person's approval, when one must) as this channel's own: the
        client giving up on this channel (_give_up: Ctrl-C, a signal, a break, its close)
        ends this channel's wait and withdraws its request, whatever the session's other
        channels wait for (ProxySession.cancel_wait knows one wait per session, the last
        begun: a Postgres client's one statement). Its wait is stopped only once its
        request is known (announced: _announcing), never while the PDP decides: the
        request it makes would then be known to no one and left pending for approvers."""
        held = asyncio.ensure_future(deciding)
        self._held, self._approval = held, approval_id
        try:
            await asyncio.wait({held})
        except asyncio.CancelledError:
            # this channel's own task stopped under the wait (an SFTP relay stopped as its
            # channel closes, which may come before the wait's own end): the request is
            # withdrawn all the same, never left pending for approvers
            if (not held.done() or held.cancelled()) and not self._shared(self._approval):
                _withdrawal(session, self._approval, self.given_up or "the channel closed")
            raise
        finally:
            self._held = None
            held.cancel()  # (this channel's own task cancelled: the session is going)
        if not held.cancelled():
            return held.result()  # type: ignore[no-any-return]
        why = self.given_up or "the client gave up waiting"
        kept = self._shared(self._approval)
        return await _withdrawn(session, self._approval, Ruling(Verdict.deny(why)), why, kept)

    def _shared(self, approval_id: str | None) -> bool:
        """Another channel of the session waits for the same request: the PDP gives a
        session one pending request per command (a second channel running the same line
        while the first waits is told the first's id). This channel giving up leaves it
        pending for the other; the last one waiting withdraws it. (Withdrawn whenever one
        gave up, Ctrl-C on a second `df /t*` denied the first as withdrawn.)"""
        return bool(approval_id) and any(
            other is not self
            and other._approval == approval_id
            and other._held is not None
            and not other.given_up
            for other in self.client.channels
        )

    def _announcing(self, tell: Any) -> Any:
        """The client told of its approval wait (the session's message, naming the request),
        and the wait stopped at once when the client gave up while it was decided."""

        def announce(text: str) -> None:
            named = WAITING_FOR.search(text)
            if named is not None and self._held is not None:
                self._approval = named[1]
                if self.given_up:
                    self._held.cancel()  # at the wait's first await, which begins now
            (tell or self.say)(text)

        return announce

    def _masking(self, ruling: Ruling) -> None:
        if ruling.kind is not VerdictKind.MASK or not ruling.verdict.mask:
            return
        masker = Masker(ruling.verdict.mask, self.client.proxy.hash_key)
        if masker.detects:
            streams = ("stdout_bytes", "stderr_bytes")
            terminal = self.kind == "ssh.shell" or bool(self.term)
            self.masks = {stream: MaskedOutput(masker, terminal) for stream in streams}
            self._typed = MaskedOutput(masker, terminal=True)  # the recording's input

    def _catch_up(self) -> None:
        pending, self._stdin = self._stdin, []
        for data in pending:
            self._record_input(data)  # typed while the shell was decided
            if self.relay is not None:
                self.relay.from_client(data)
            else:
                self.up.write(data)
        if self._stdin_eof:
            self.eof_received()
        if self.chan is not None:
            self.chan.resume_reading()

    def _env_names(self) -> list[str]:
        """The names of the variables the client's env requests set (`SendEnv`, `SetEnv`:
        LANG, and LD_PRELOAD or BASH_ENV from an attacker), none of which the proxy passes
        upstream (the policy decides no environment): named in the command's event, their
        values never (a client may send a secret so), at most MAX_ENV_NAMES of them."""
        try:
            names = list(self.chan.get_environment_bytes()) if self.chan is not None else []
        except Exception:  # (an asyncssh without it: nothing to say)
            return []
        shown = sorted({bytes(n).decode("utf-8", "replace")[:MAX_ENV_NAME] for n in names})
        return shown[:MAX_ENV_NAMES]

    def _details(self, status: int | None, error: str = "") -> dict[str, Any]:
        c = self.counts
        cut = _recorded_command(self.raw) is not self.raw
        ended: dict[str, Any] = {}
        if self.report is not None:
            ended["wrapper"] = WRAPPED_SHELL if self.kind == "ssh.shell" else WRAPPED
            if self.report.sid is not None:
                ended["upstream_session"] = self.report.sid
            if self._reap_outcome:
                ended["reap_failed"] = self._reap_outcome
            elif self._reap_outcome is not None and self.report.audit is not None:
                ended["reaped"] = (
                    "the proxy killed every process of that session and of its audit"
                    f" session {self.report.audit} (what left the session too)"
                )
            elif self._reap_outcome is not None and self.report.shared is not None:
                ended["reaped"] = (
                    "the proxy killed every process of that session and of the connection's"
                    f" audit session {self.report.shared} but the connection's live channels'"
                    " and sshd's (what left a session too)"
                )
            elif self._reap_outcome is not None:
                ended["reaped"] = (
                    "the proxy killed every process of that session (the upstream gave the"
                    " shell no audit session of its own: a process that left the session,"
                    " setsid, may run on)"
                )
        env = self._env_names()
        if env:
            ended["env_not_passed"] = env
        if self._secrets.lines:
            ended["typed_at_password_prompts"] = self._secrets.lines  # lines not recorded
        if self._secrets.unsure:  # typed ahead, never decided: not recorded
            ended["typed_ahead_not_recorded"] = self._secrets.unsure
        return (
            (truncation_facts(self.raw) if cut else {})
            | ended
            | _exec_details(
                self.kind,
                status,
                c["stdout_bytes"],
                c["stderr_bytes"],
                c["stdin_bytes"],
                error,
                self.kind == "ssh.subsystem" and self.up is not None and self.relay is None,
            )
        )

    def _cast_soon(self) -> None:
        assert self.cast is not None
        if self.cast.pending >= CAST_BATCH or self.cast.pending_bytes >= CAST_BATCH_BYTES:
            self._record_cast()
        elif self._cast_timer is None:
            self._cast_timer = asyncio.get_running_loop().call_later(CAST_EVERY, self._record_cast)

    def _record_input(self, data: bytes) -> None:
        """What was typed, for the recording: a line typed at a password prompt left out
        (portcullis/password_prompts.py); under a mask, masked as the screen's output is (a
        card number pasted at a prompt), line by line (the upstream gets it as typed)."""
        if self.cast is None:
            return
        self._cast_frames(self._secrets.input(time.time(), data.decode("latin-1")))

    def _cast_frames(self, frames: list[list[Any]]) -> None:
        """Frames the password prompt rule gives the recording (HeldFrames: held while a
        line typed ahead waits for its prompt), typed input masked."""
        assert self.cast is not None
        for at, code, text in frames:
            data = text.encode("latin-1")
            if code == "o":
                self.cast.output(at, data)
                continue
            if self._typed is not None:
                data = self._typed.feed(data)
            if data:
                self.cast.input(at, data)
        if frames:
            self._cast_soon()

    def _record_cast(self) -> None:
        if self._cast_timer is not None:
            self._cast_timer.cancel()
            self._cast_timer = None
        cast, session = self.cast, self.client.session
        if cast is None or session is None or self.ruling is None:
            return
        first = not getattr(self, "_cast_started", False)
        events = cast.take(final=self._upstream_done.done())
        if not events and not first:
            return
        self._cast_started = True
        details: dict[str, Any] = {
            "kind": "ssh.asciicast",
            "decision_id": self.ruling.decision_id,
            "channel": self.number,
            "events": events,
        }
        if first:
            details["header"] = cast.header
        session.record_response(**details)

    def _end(self, status: int, error: str = "") -> None:
        self._accept()
        if error:
            self.say(f"portcullis: {error}")
        if self._gone or self.chan is None:
            return
        with contextlib.suppress(Exception):
            self.chan.exit(status)


class UpstreamChannel(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    """The upstream half of a channel: what the server sends, passed to the client half."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.channel.upstream_data(data, datatype == asyncssh.EXTENDED_DATA_STDERR)

    def eof_received(self) -> bool:
        self.channel.upstream_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        # a withheld output's command ended with 1, a timed-out one with 124
        if not self.channel.withheld and not self.channel.ended_by:
            self.channel.exit_status = status
        self.channel.upstream_ended()

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        if not self.channel.withheld and not self.channel.ended_by:
            self.channel.exit_signal = (signal, core_dumped, msg)
        self.channel.upstream_ended()

    def pause_writing(self) -> None:
        if self.channel.chan is not None:
            self.channel.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.channel.chan is not None:
            self.channel.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.upstream_closed()


def small_packets(chan: Any) -> str:
    """Why the client's channel cannot be relayed to (its maximum packet size below
    MIN_CLIENT_PACKET), or "". asyncssh keeps the size the client asked for in its channel
    (_send_pktsize); an asyncssh without it is not checked."""
    size = getattr(chan, "_send_pktsize", None)
    if not isinstance(size, int) or size >= MIN_CLIENT_PACKET:
        return ""
    return (
        f"the channel's maximum packet size ({size} bytes) is below the"
        f" {MIN_CLIENT_PACKET} the proxy sends to"
    )


def _unenforceable(ruling: Ruling) -> str:
    """Why a mask verdict cannot be kept on a byte stream, or "": a rule naming a field, a
    column or a derived value names nothing in a command's output, and passing the output
    as it is would drop the mask."""
    if ruling.kind is not VerdictKind.MASK:
        return ""
    if any(rule.field or rule.derived for rule in ruling.verdict.mask):
        return (
            "the policy masks named fields, which SSH output does not have: "
            "the proxy cannot keep that mask"
        )
    return ""


def _recorded_command(raw: str) -> str:
    """What a command event keeps of a command line: all of it up to RECORDED_COMMAND
    bytes, else its first RECORDED_COMMAND bytes (whole characters); raw itself when kept
    whole (the event's details then say nothing of a cut)."""
    whole = longer_than(raw, RECORDED_COMMAND)
    return raw if whole is None else whole[:RECORDED_COMMAND].decode("utf-8", "ignore")


async def _withdraw(session: Any, ruling: Ruling, why: str) -> None:
    """An approval request made for a command that will not run (its terminal was refused,
    the two asked together): withdrawn, so no approver is asked about it."""
    if ruling.kind is not VerdictKind.REQUIRE_APPROVAL or not ruling.approval_id:
        return
    grant = session.grant
    if grant is not None:
        await session.runtime.pdp.withdraw_approval(grant.session_id, ruling.approval_id, why)


async def _withdrawn(
    session: Any, approval_id: str, ruling: Ruling, why: str, kept: bool = False
) -> Ruling:
    """The denial of a command whose client gave up waiting for a person's approval, once
    its request is withdrawn (no approver is asked about it any more); or, `kept`, left
    pending for another channel of the session waiting for it (Channel._shared)."""
    if kept:
        return Ruling(
            Verdict.deny(
                f"cancelled by the client: approval request {approval_id} left pending: "
                "another channel of this session waits for it"
            ),
            ruling.decision_id,
            ruling.policy_revision,
            approval_id=approval_id,
            canceled=True,
        )
    withdrawn = False
    withdrawal = _withdrawal(session, approval_id, why)
    if withdrawal is not None:
        # shielded: the channel's end (an SFTP relay stopped as its channel closes) does
        # not stop the withdrawal on its way
        withdrawn = await asyncio.shield(withdrawal)
    return withdrawn_ruling(ruling, approval_id, "cancelled by the client", withdrawn)


def _withdrawal(session: Any, approval_id: str, why: str) -> asyncio.Future[bool] | None:
    """The withdrawal of a request, on its way whatever becomes of its caller (kept in
    _WITHDRAWALS until done); None without a session at the PDP or a request."""
    if session.grant is None or not approval_id:
        return None
    withdrawal = asyncio.ensure_future(
        session.runtime.pdp.withdraw_approval(session.grant.session_id, approval_id, why)
    )
    _WITHDRAWALS.add(withdrawal)
    withdrawal.add_done_callback(_WITHDRAWALS.discard)
    return withdrawal


def _settle(opening: asyncio.Future[Any]) -> None:
    """An upstream channel not wanted (its request was denied, or the client left): it
    closes by itself (its gate is None); whatever it ends with is not an error of anyone's."""
    opening.add_done_callback(lambda f: f.cancelled() or f.exception())


def _upstream_error(exc: BaseException) -> str:
    """What went wrong upstream, in words safe for the client (no key, no secret)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "the upstream refused the proxy's credential"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return "the upstream's host key is not the one pinned"
    if isinstance(exc, CredentialUnavailable):
        return str(exc)
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"channel refused ({exc.reason})"
    return type(exc).__name__
