"""Probe P2 of the SSH proxy through the real stack (proxy, PDP, sshd; asyncssh and OpenSSH
clients): each test is a bypass found by probing, failing before its fix.

Subsystems: a dba's subsystem other than sftp passed as raw bytes nobody decided (the
policy allowed any subsystem to the privileged groups); now each is allowed by name only,
and one allowed that the proxy cannot read is said so in the decision and the evidence."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_harness import shipped_engine
from ssh_harness import Sshd, line_echo
from test_ssh_proxy import Stack, ssh_policy, ssh_stack

from pdp.domain.recordings import session_events
from pdp.domain.ssh_input import ssh_command
from pdp.engine.opa import DECISION_PATH, evaluate
from portcullis.masking import DETECTORS, Masker
from portcullis.verdict import MaskRule
from proxies.ssh.stream import HOLD_LIMIT, MaskedOutput, Unreadable

pytestmark = pytest.mark.integration

READER = ("readonly",)
DBA = ("dba", "pii-readers")


@pytest.fixture
def echo_subsystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd serves a subsystem `netconf` that echoes its input (/bin/cat)."""
    config = Sshd.config
    monkeypatch.setattr(Sshd, "config", lambda self: config(self) + "Subsystem netconf /bin/cat\n")


@pytest.fixture
async def stack(tmp_path: Path, echo_subsystem: None) -> AsyncIterator[Stack]:
    async with ssh_stack(tmp_path) as s:
        yield s


def policy_naming(tmp: Path, subsystems: list[str]) -> Path:
    return ssh_policy(tmp, subsystems=subsystems)


async def subsystem(conn: Any, name: str, data: bytes) -> tuple[int | None, bytes, bytes]:
    process = await conn.create_process(subsystem=name, encoding=None)
    process.stdin.write(data)
    process.stdin.write_eof()
    result = await process.wait()
    return result.exit_status, result.stdout, result.stderr


async def test_a_subsystem_not_named_by_the_policy_is_denied(stack: Stack) -> None:
    async with await stack.connect(DBA) as conn:
        for name in ("netconf", "sftp-server", "x"):
            status, out, err = await subsystem(conn, name, b"raw bytes\n")
            assert status == 1 and out == b"", (name, out)
            assert err.startswith(b"portcullis: denied: the subsystem "), err
            assert b"is not allowed by the policy (allowed: sftp)" in err, err
    assert stack.sshd.sessions_started() == 0


async def test_a_named_subsystem_is_relayed_and_said_unread(
    tmp_path: Path, echo_subsystem: None
) -> None:
    policy = str(policy_naming(tmp_path, ["netconf"]))
    async with ssh_stack(tmp_path, extra={"policies": policy}) as s:
        async with await s.connect(READER) as conn:
            status, out, err = await subsystem(conn, "netconf", b"raw bytes\n")
            assert status == 1 and b"reserved to" in err  # still the privileged groups' only
        async with await s.connect(DBA) as conn:
            status, out, _ = await subsystem(conn, "netconf", b"raw bytes\n")
            assert (status, out) == (0, b"raw bytes\n")
        await s.proxy.settled()
        decisions = await s.pdp.store.query(kind="decision")
        events = await session_events(s.pdp.store)
    allowed = [d.body for d in decisions if d.body.get("kind") == "ssh.subsystem"
               and d.body.get("verdict") == "allow"]  # fmt: skip
    assert len(allowed) == 1
    assert any("the proxy cannot read it" in r for r in allowed[0]["reasons"]), allowed
    commands = [e["details"] for e in events if e["type"] == "command"
                and e.get("details", {}).get("subsystem")]  # fmt: skip
    relayed = [c for c in commands if c.get("exit_status") == 0]
    assert relayed and "relayed unread" in relayed[0]["unread"], commands


# -- allowed commands with options that reach elsewhere: an allow-list of options ------------


def verdict(engine: Any, line: str, groups: tuple[str, ...] = READER) -> dict[str, Any]:
    policy_input = {
        "identity": {"subject": "mallory@example.com", "groups": list(groups)},
        "connection": {"name": "web-1", "type": "ssh"},
        "command": {"kind": "ssh.exec", "raw": line, "ssh": ssh_command("ssh.exec", line, {})},
    }
    result: dict[str, Any] = evaluate(engine, policy_input, DECISION_PATH)
    return result


engine = pytest.fixture(scope="module")(shipped_engine)

# each was allowed to a reader: another machine's or container's units, another journal
ELSEWHERE = [
    "systemctl status -H root@10.0.0.9 sshd",
    "systemctl status --host=10.0.0.9",
    "systemctl status --ho 10.0.0.9",
    "systemctl status -M web",
    "systemctl status --machine web sshd",
    "systemctl status -lM web",
    "systemctl status -r",
    "systemctl status '-H' h",
    'systemctl status "--host=h"',
    "systemctl status \\-H h",
    "journalctl --image=/srv/vm.raw",
    "journalctl --directory=/home/alice/.local/share/journal",
    "journalctl -D /root",
    "journalctl -qD/root",
    "journalctl --file=/tmp/stolen.journal",
    "journalctl --file /tmp/stolen.journal",
    "journalctl -i /tmp/stolen.journal",
    "journalctl --root=/mnt",
    "journalctl --merge",
    "journalctl -u -D /root",
    "systemctl status 'ssh*'",
    "systemctl status ss?d",
    "journalctl -u '[a-z]*'",
    "systemctl status $(echo -H) h",
    # JSON output writes a field holding a control character as an array of byte values
    "journalctl -o json",
    "journalctl -fojson-pretty",
    "journalctl --output json-sse",
    "systemctl status sshd --output=json",
]


@pytest.mark.parametrize("line", ELSEWHERE)
def test_options_reaching_elsewhere_need_approval(engine: Any, line: str) -> None:
    for groups in (READER, DBA):
        result = verdict(engine, line, groups)
        assert result["verdict"] in ("require_approval", "deny"), (line, groups, result)


@pytest.mark.parametrize(
    "line",
    [
        "systemctl status sshd --no-pager -l -n 20",
        "journalctl -u sshd --since today --no-pager -o short-iso",
        "journalctl -n50 -usshd -p err",
        "journalctl -b -1 -xe",
    ],
)
def test_reading_options_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ("allow", "mask"), line


async def test_a_journal_elsewhere_waits_for_a_person(stack: Stack) -> None:
    async with await stack.connect(READER) as conn:
        for line in ("journalctl --directory=/root", "systemctl status -H root@127.0.0.1"):
            process = await conn.create_process(line)
            said = await process.stderr.readuntil("--reason '...'")
            assert "not among the options allowed" in said, said
            process.close()
    assert stack.sshd.sessions_started() == 0


# -- output the mask cannot read ----------------------------------------------------------------

CARD_LINE = "card 4111 1111 1111 1111 mail alice@example.com\n"


def policy_allowing(tmp: Path, pattern: str) -> Path:
    return ssh_policy(tmp, pattern)


async def test_output_the_mask_cannot_read_is_withheld(tmp_path: Path) -> None:
    """A reader's `cat` of a rotated, gzip'd log (or a UTF-16 one) came out as it was: the
    detectors saw compressed bytes, the client unzipped a card number and an e-mail."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log.1.gz").write_bytes(gzip.compress(CARD_LINE.encode() * 50))
    (logs / "utf16.log").write_bytes(CARD_LINE.encode("utf-16-le"))
    (logs / "app.log").write_text(CARD_LINE)
    policy = str(policy_allowing(tmp_path, f"cat {logs}/*"))
    async with ssh_stack(tmp_path, extra={"policies": policy}) as s:
        async with await s.connect(READER) as conn:
            plain = await conn.run(f"cat {logs}/app.log", encoding=None)
            zipped = await conn.run(f"cat {logs}/app.log.1.gz", encoding=None)
            wide = await conn.run(f"cat {logs}/utf16.log", encoding=None)
        await s.proxy.settled()
        events = await session_events(s.pdp.store)
    assert plain.exit_status == 0 and b"1111 mail" in plain.stdout
    assert b"4111" not in plain.stdout and b"alice@" not in plain.stdout
    for result in (zipped, wide):
        assert result.exit_status == 1, result
        assert b"portcullis: output withheld: " in result.stderr, result.stderr
        got = result.stdout
        with contextlib.suppress(Exception):
            got = gzip.decompress(got)
        assert b"4111" not in got and b"4\x001\x001\x001\x00" not in got
    errors = [e["details"].get("error", "") for e in events if e["type"] == "command"]
    assert sum("output withheld" in e for e in errors) == 2, errors


def test_a_terminal_drops_what_is_not_text_and_masks_the_rest() -> None:
    masker = Masker([MaskRule(detector=d) for d in DETECTORS], b"k" * 32)
    screen = MaskedOutput(masker, terminal=True)
    out = screen.feed(CARD_LINE.encode("utf-16-le") + b"\xff\xfe4111 1111 1111 1111\n")
    assert b"4111" not in out and b"\x00" not in out and b"\xff" not in out
    assert screen.counts["detector:credit_card"] == 2
    with pytest.raises(Unreadable):
        MaskedOutput(masker).feed(b"\x1f\x8b\x08\x00 binary\n")
    with pytest.raises(Unreadable):
        MaskedOutput(masker).feed(b"4\x001\x00\n")
    # text passes as before, line ends, escapes and all
    assert MaskedOutput(masker).feed(b"\x1b[1mok\x1b[0m caf\xc3\xa9\r\n") == (
        b"\x1b[1mok\x1b[0m caf\xc3\xa9\r\n"
    )


@pytest.mark.parametrize("split", [1, 2])
def test_a_long_line_cut_inside_a_character_is_text(split: int) -> None:
    """A line longer than the hold limit, its chunk ending inside a UTF-8 character: the
    character waits for its other bytes (it was read as not UTF-8, and the output withheld)."""

    masker = Masker([MaskRule(detector=d) for d in DETECTORS], b"k" * 32)
    line = ("café 4111 1111 1111 1111 " * 400).encode() + "€ end\n".encode()
    at = len(("café 4111 1111 1111 1111 " * 400).encode()) + split  # inside the €
    assert at > HOLD_LIMIT
    out = MaskedOutput(masker)
    sent = out.feed(line[:at]) + out.feed(line[at:]) + out.flush()
    assert sent == masker.mask_text(line.decode())[0].encode()


SHAPES = [
    "4.111111111111111e15", "4,111,111,111,111,111", "\u00a0".join(["4", *["111"] * 5]),
    "0000004111111111111111", "4111_1111_1111_1111", "bob@example.com", "x" * 300, "\n", "\r\n",
    " ", "é€", "1.5e3",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(SHAPES), min_size=1, max_size=60),
    st.integers(1, 20),
    st.lists(st.integers(1, 5000), min_size=1, max_size=40),
)
def test_output_cut_anywhere_is_masked_as_the_whole(
    words: list[str], repeat: int, cuts: list[int]
) -> None:
    text = (" ".join(words) * repeat).encode()
    masker = Masker([MaskRule(detector=d, strategy="partial") for d in DETECTORS], b"k" * 32)
    out, sent, pos = MaskedOutput(masker), b"", 0
    for size in itertools.cycle(cuts):
        if pos >= len(text):
            break
        sent += out.feed(text[pos : pos + size])
        pos += size
    sent += out.flush()
    assert sent == masker.mask_text(text.decode())[0].encode()


def test_a_quiet_terminal_keeps_a_character_cut_in_two() -> None:
    """A prompt flushed while quiet, its last chunk ending inside a character: the screen
    gets the character whole once its other bytes come (it was dropped as not text)."""
    masker = Masker([MaskRule(detector=d) for d in DETECTORS], b"k" * 32)
    screen = MaskedOutput(masker, terminal=True)
    prompt = "prüfung € $ ".encode()
    at = prompt.index("€".encode()) + 1
    sent = screen.feed(prompt[:at]) + screen.flush() + screen.feed(prompt[at:]) + screen.flush()
    assert sent == prompt


async def test_a_forward_allowed_is_said_unread(stack: Stack) -> None:
    """A dba's forwarded connection carries bytes the proxy never reads (a database's
    answers, unmasked): its decision and its event now say so."""

    async with line_echo() as port:
        async with await stack.connect(DBA) as conn:  # a pii-reader: under masks it is denied
            reader, writer = await conn.open_connection("127.0.0.1", port)
            writer.write(b"card 4111 1111 1111 1111\n")
            assert await reader.readline() == b"card 4111 1111 1111 1111\n"
            writer.close()
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
        events = await session_events(stack.pdp.store)
    forwards = [d.body for d in decisions if d.body.get("kind") == "ssh.forward"]
    assert [d["verdict"] for d in forwards] == ["allow"]
    assert any("the proxy cannot read a forwarded connection" in r for r in forwards[0]["reasons"])
    said = [e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.forward"]
    assert said and "relayed unread" in said[0]["unread"], said


async def test_a_mask_of_fields_on_ssh_output_is_refused(tmp_path: Path) -> None:
    """A policy whose mask for an exec names a field (a column, a JSON key) had it dropped:
    the SSH proxy masks by detectors only, so with no detector rule the output went as it
    was; with detectors beside it, the field rule was ignored. Now such an exec is denied."""
    policy = policy_allowing(tmp_path, "uptime")
    (policy / "ssh_field_mask.rego").write_text(
        "package portcullis\n\n"
        'mask_rules contains {"field": "email", "strategy": "redact"} if {\n'
        '\tinput.command.kind == "ssh.exec"\n'
        "}\n"
    )
    async with (
        ssh_stack(tmp_path, extra={"policies": str(policy)}) as s,
        await s.connect(("readonly", "pii-readers")) as conn,
    ):
        result = await conn.run("uptime")
    assert result.exit_status == 1, result
    assert "the proxy cannot keep that mask" in str(result.stderr), result.stderr
    assert s.sshd.sessions_started() == 0


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize(
    "line",
    [
        b"\x1b[01;31m\x1b[K4111\x1b[m\x1b[K 1111 1111 1111\n",  # grep --color=always 4111
        b"card \x1b[1m4111 1111\x1b[0m 1111 1111 done\r\n",  # a coloured log line
        b"mail bob\x1b[4m@\x1b[24mexample.com\n",
        b"\x1b]8;;http://x\x1b\\4111\x1b]8;;\x1b\\ 1111 1111 1111\n",  # a hyperlink
        b"card 4111\xc2\x9b0m 1111 1111 1111\n",  # C1 CSI
        b"card 4\x0841\x0811\x0811\x081 1111 1111 1111\n",  # overstrike (nroff bold)
    ],
)
def test_a_value_split_by_terminal_escapes_is_masked(line: bytes, terminal: bool) -> None:
    """What the screen shows with the escape sequences interpreted is what is masked: a
    card grep coloured (or a log line coloured mid-value) passed the detectors, which read
    the sequences as text between the digits."""
    masker = Masker([MaskRule(detector=d) for d in DETECTORS], b"k" * 32)
    out = MaskedOutput(masker, terminal=terminal)
    sent = out.feed(line) + out.flush()
    shown = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;;[^\x1b]*\x1b\\|\xc2\x9b0m|.\x08", b"", sent)
    assert b"4111 1111 1111 1111" not in shown and b"bob@example.com" not in shown, sent
    assert sum(out.counts.values()) == 1


def test_styled_text_without_values_keeps_its_styling() -> None:
    masker = Masker([MaskRule(detector=d) for d in DETECTORS], b"k" * 32)
    for line in (b"\x1b[1mbold\x1b[0m 1234 5678\n", b"\x1b[31mbob@example.com\x1b[0m\n"):
        out = MaskedOutput(masker, terminal=True)
        sent = out.feed(line) + out.flush()
        assert sent.count(b"\x1b[") == 2, sent  # the styling stays


async def test_what_is_typed_is_masked_in_the_recording(tmp_path: Path) -> None:
    """A dba outside pii-readers (a masked shell, allowed by shell_unmasked) pasting a card
    number at a prompt: the screen's echo of it was masked, the recording's input events
    held it as typed."""
    policy = ssh_policy(tmp_path, shell_unmasked=True)
    async with ssh_stack(tmp_path, extra={"policies": policy}) as stack:
        async with await stack.connect(("dba",)) as conn:
            process = await conn.create_process(term_type="xterm", term_size=(100, 30))
            process.stdin.write("echo paid with 4111 1111 1111 1111 by bob@example.com\n")
            await process.stdout.readuntil("by b")
            process.stdin.write("exit\n")
            await process.wait()
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    casts = [e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.asciicast"]
    recorded = [e for c in casts for e in c["events"]]
    typed = "".join(data for _, code, data in recorded if code == "i")
    shown = "".join(data for _, code, data in recorded if code == "o")
    assert "echo paid with" in typed and "exit" in typed, typed
    for text in (typed, shown):
        assert "4111 1111 1111 1111" not in text and "bob@example.com" not in text, text
