"""SSH probe, part 3: output a screen shows other than the detectors read it (a line
overwritten by carriage returns), SFTP reads and forwards of users under masks."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest
from ssh_harness import line_echo
from ssh_probe_stack import stack_fixture
from test_ssh_proxy import Stack, ssh_policy, ssh_stack

from pdp.domain.recordings import session_events
from portcullis.masking import DETECTORS, Masker
from portcullis.verdict import MaskRule
from proxies.ssh.stream import RESIZES_PER_SECOND, Cast, MaskedOutput, shown

pytestmark = pytest.mark.integration

READER = ("readonly",)

CARD = "4111 1111 1111 1111"
# each shows the card on a terminal, while no piece between carriage returns holds it
OVERWRITTEN = [
    b"4111 1111 XXXX 1111\r4111 1111 1111\n",
    b"pay XXXX 1111 1111 1111\rpay 4111\r\n",
    b"XXXX\r\x1b[5C1111 1111 1111\r4111\n",  # cursor forward over what stays
    b"4111 1111 1111 XXXX\r\t\t\x081111\n",  # tab stops, a backspace
]


def masker() -> Masker:
    return Masker([MaskRule(detector=d) for d in DETECTORS], b"k" * 32)


stack = stack_fixture()


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("line", OVERWRITTEN)
@pytest.mark.parametrize("split", [0, 5, 21])
def test_a_line_overwritten_by_carriage_returns_is_masked_as_shown(
    line: bytes, terminal: bool, split: int
) -> None:
    out = MaskedOutput(masker(), terminal)
    sent = out.feed(line[:split]) + out.feed(line[split:]) + out.flush()
    assert CARD not in shown(sent.decode()), sent
    assert out.counts["detector:credit_card"] == 1


def test_progress_lines_without_values_pass_as_they_are() -> None:
    out = MaskedOutput(masker())
    data = b" 10%\r 50%\r100%\r\ndone\n"
    assert out.feed(data) + out.flush() == data


def policy_allowing(tmp: Path, pattern: str, **ssh: object) -> Path:
    return ssh_policy(tmp, pattern, **ssh)


async def test_carriage_returns_through_the_proxy(tmp_path: Path) -> None:
    """A reader's `cat` (exec, no terminal) and a dba's shell (a terminal), both outside
    pii-readers, through the proxy, the PDP and sshd (asyncssh client): what the client's
    screen shows holds no card (before: each piece between CRs was masked alone)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "cr.log").write_bytes(b"".join(OVERWRITTEN))
    policy = str(policy_allowing(tmp_path, f"cat {logs}/*", shell_unmasked=True))
    async with ssh_stack(tmp_path, extra={"policies": policy}) as s:
        async with await s.connect(READER) as conn:
            result = await conn.run(f"cat {logs}/cr.log")
        async with await s.connect(("dba",)) as conn:
            process = await conn.create_process(term_type="xterm", term_size=(100, 30))
            process.stdin.write(f"cat {logs}/cr.log; echo DO''NE\n")
            screen = await process.stdout.readuntil("DONE\r\n")
            process.stdin.write("exit\n")
            await process.wait()
    assert result.exit_status == 0, result
    assert str(result.stdout).count("**** 1111") == 4, result.stdout
    for text in (str(result.stdout), screen):
        assert CARD not in shown(text), text


async def test_sftp_reads_of_a_dba_under_masks_are_refused(tmp_path: Path) -> None:
    """A dba outside pii-readers read by SFTP what `cat` gives masked (before: the policy
    allowed the read, unmasked). Now its decision is a mask, which the proxy cannot keep
    for data read at offsets: refused; also an open for read and write (a read through a
    read-write handle). Listing and writing stay allowed."""

    data = tmp_path / "data"
    data.mkdir()
    (data / "cards.txt").write_text(f"paid with {CARD}\n")
    async with ssh_stack(tmp_path) as s:
        async with await s.connect(("dba",)) as conn, conn.start_sftp_client() as sftp:
            assert "cards.txt" in await sftp.listdir(str(data))
            for mode in ("r", "r+"):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    async with sftp.open(str(data / "cards.txt"), mode) as f:
                        await f.read()
        await s.proxy.settled()
        decisions = await s.pdp.store.query(kind="decision")
    reads = [d.body for d in decisions if d.body.get("kind") == "ssh.sftp"]
    assert [d["verdict"] for d in reads if "cards.txt" in d.get("raw", str(d))] == ["mask"] * 2


async def test_a_forward_of_a_dba_under_masks_is_denied(tmp_path: Path) -> None:
    """A dba outside pii-readers: a forward relays bytes nobody masks (a database's answers
    the dba's exec output would show masked): denied, nothing connects; a policy naming
    forward_unmasked allows it, and its decision says so."""

    async with line_echo() as port:
        async with ssh_stack(tmp_path / "a") as s, await s.connect(("dba",)) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", port)
        policy = str(policy_allowing(tmp_path, "uptime", forward_unmasked=True))
        async with ssh_stack(tmp_path / "b", extra={"policies": policy}) as s:
            async with await s.connect(("dba",)) as conn:
                reader, writer = await conn.open_connection("127.0.0.1", port)
                writer.write(b"ping\n")
                assert await reader.readline() == b"ping\n"
                writer.close()
            await s.proxy.settled()
            decisions = await s.pdp.store.query(kind="decision")
    forwards = [d.body for d in decisions if d.body.get("kind") == "ssh.forward"]
    assert [d["verdict"] for d in forwards] == ["allow"]
    assert any("forward_unmasked" in r for r in forwards[0]["reasons"]), forwards


def test_a_flood_of_resizes_is_bounded_in_the_recording() -> None:
    cast = Cast(80, 24, "xterm", 1000.0)
    for i in range(10_000):
        cast.resize(1000.5, 80 + i % 50, 24)
    cast.resize(1001.2, 100, 40)
    events = cast.take(final=True)
    sizes = [e[2] for e in events if e[1] == "r"]
    assert len(sizes) <= 2 * RESIZES_PER_SECOND + 2, len(sizes)
    assert sizes[-2:] == [f"{80 + 9_999 % 50}x24", "100x40"]  # the flood's last size kept
    assert any("resizes not recorded" in e[2] for e in events if e[1] == "o")


async def test_window_changes_flooded_through_the_proxy_are_bounded(stack: Stack) -> None:
    """A dba's shell sending 3,000 window-change requests: the recording keeps few."""
    async with await stack.connect(("dba", "pii-readers")) as conn:
        process = await conn.create_process(term_type="xterm", term_size=(100, 30))
        process.stdin.write("echo RE''ADY\n")
        await process.stdout.readuntil("READY")
        for i in range(3000):
            process.change_terminal_size(80 + i % 40, 24)
        process.stdin.write("echo DO''NE; exit\n")
        await process.stdout.readuntil("DONE")
        await process.wait()
    await stack.proxy.settled()
    events = await session_events(stack.pdp.store)
    casts = [e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.asciicast"]
    resizes = [e for c in casts for e in c["events"] if e[1] == "r"]
    assert 0 < len(resizes) < 200, len(resizes)


async def test_a_terminal_type_that_is_not_a_terminfo_name_is_refused(stack: Stack) -> None:
    """The client's terminal type becomes TERM for what runs upstream: before, any text
    passed (a path, shell metacharacters, a newline); now only a terminfo name."""
    async with await stack.connect(("dba", "pii-readers")) as conn:
        for term in ("xterm;$(id)", "../../tmp/evil", "xterm\nLD_PRELOAD=x", "x" * 65):
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.create_process(term_type=term, term_size=(80, 24))
        process = await conn.create_process(term_type="xterm-256color", term_size=(80, 24))
        process.stdin.write('echo "[$TERM]"; exit\n')
        assert "[xterm-256color]" in (await process.wait()).stdout
