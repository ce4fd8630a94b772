"""SSH probe, part 4: output masked in pieces (a line sent in parts: a quiet terminal's
flush, a long line's cut), SFTP names under masks, long command lines in the evidence,
and exec lines whose words bash expands otherwise than the PDP read them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_harness import shipped_engine
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import ssh_policy, ssh_stack

from pdp.domain.recordings import session_events
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.ssh import stream
from proxies.ssh.stream import MaskedOutput, shown

engine = pytest.fixture(scope="module")(shipped_engine)

# A brace expansion whose first element holds a `}` (escaped, quoted, or a nested `{a}`)
# was read as one plain word (the PDP's BRACES stopped at the first `}`): no option, no
# glob, nothing computed, so a reader's journalctl / systemctl took it; bash expands it
# into several words, one of them an option the policy asks approval for (or refuses).
HIDDEN_BRACES = [
    # journalctl --vacuum-time=1s: deletes journal files (a write option: approval)
    ("journalctl --grep {x\\},--vacuum-time=1s}", ["--grep", "x}", "--vacuum-time=1s"]),
    ("journalctl --grep {x'}',--vacuum-time=1s}", ["--grep", "x}", "--vacuum-time=1s"]),
    ("journalctl --grep {{x},--vacuum-time=1s}", ["--grep", "{x}", "--vacuum-time=1s"]),
    # journalctl -D: journal files of another directory (not an allowed option)
    ('journalctl {"}",-D/tmp}', ["}", "-D/tmp"]),
    # systemctl -H host: another machine's units (not an allowed option)
    ("systemctl status {\\},-H,host}", ["status", "}", "-H", "host"]),
]


def bash_words(line: str) -> list[str]:
    """The words bash passes to the line's command (its name replaced by printf)."""
    rest = line.partition(" ")[2]
    script = f"set -- {rest}; printf '%s\\0' \"$@\""
    out = subprocess.run(["/bin/bash", "-c", script], capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize(("line", "words"), HIDDEN_BRACES)
def test_a_brace_expansion_hidden_behind_a_brace_is_read_as_computed(
    engine: Any, line: str, words: list[str]
) -> None:
    assert bash_words(line) == words  # what the upstream's bash runs
    part = reading(line)["parts"][0]
    assert part["dynamic"], part  # before: a plain word, nothing computed
    assert verdict(engine, line)["verdict"] not in ALLOWED  # before: allow / mask


# -- output masked in pieces ------------------------------------------------------------

CARD = "4111 1111 1111 1111"
CROSSED = getattr(stream, "CROSSED", b"(the tree before had no such note)")
RULES = (MaskRule("", "email", "partial"), MaskRule("", "credit_card", "partial"))


def masker() -> Masker:
    return Masker(RULES, b"k" * 32)


def found(sent: bytes) -> Counter[str]:
    """What the detectors find in what was sent, or in what a screen shows of it."""
    text = sent.decode()
    return masker().mask_text(text)[1] + masker().mask_text(shown(text))[1]


def quietly(pieces: list[bytes], terminal: bool = True) -> tuple[bytes, MaskedOutput]:
    """What a terminal's MaskedOutput sends of pieces each followed by a pause (the
    channel's quiet flush), then the end of the stream."""
    out = MaskedOutput(masker(), terminal)
    sent = b""
    for piece in pieces:
        sent += out.feed(piece) + quiet_flush(out)
    return sent + out.flush(), out


def quiet_flush(out: MaskedOutput) -> bytes:
    try:
        return out.flush(final=False)
    except TypeError:  # the tree before: every flush gave all it held
        return out.flush()


PAUSED = [
    # printf '4111 1111'; sleep 0.2; printf ' 1111 1111'; echo
    [b"4111 1111", b" 1111 1111", b"\r\n"],
    [b"card: 4111", b" 1111 1111", b" 1111 ok\r\n"],
    # twelve digits sent, four more: a partial mask would show them (the whole card)
    [b"4111 1111 1111", b" 1111\r\n"],
    # coloured groups
    [b"\x1b[1m4111\x1b[0m 1111", b" 1111 1111\r\n"],
    # the part sent brought back under what follows by a carriage return
    [b"XXXXXXXXX 1111 1111 x", b"\r4111 1111", b"\r\n"],
    [b"XXXXXXXXX 1111 1111 x", b"\r4111 1111\x1b[12Cmore\r\n"],
]


@pytest.mark.parametrize("pieces", PAUSED)
def test_a_value_printed_in_pieces_with_pauses_is_masked(pieces: list[bytes]) -> None:
    sent, out = quietly(pieces)
    assert not found(sent), sent  # before: the card whole on the screen
    assert out.counts["detector:credit_card"] >= 1 or CROSSED in sent, sent
    assert b"1111 1111 1111" not in sent


def test_a_prompt_and_typed_echo_still_go_out_when_quiet() -> None:
    out = MaskedOutput(masker(), terminal=True)
    assert out.feed(b"root@host:~# ") + out.flush(final=False) == b"root@host:~# "
    assert out.feed(b"l") + out.flush(final=False) == b"l"
    assert out.feed(b"s -l") + out.flush(final=False) == b"s -l"
    # a tail of digits waits for the line's end (or the stream's)
    assert out.feed(b" /var/log/x.1") + out.flush(final=False) == b" /var/log/x"
    assert out.feed(b"\r\n") == b".1\r\n"


def long_line_with_overwrite() -> list[bytes]:
    """A line longer than the hold limit whose head shows half a card, then, after more
    than the overlap, a carriage return writing the other half in front of it."""
    head = b"XXXXXXXXX 1111 1111 " + b"pad " * 1000
    return [head, b"y" * 1100, b"\r4111 1111\n"]


@pytest.mark.parametrize("terminal", [False, True])
def test_a_long_line_overwritten_after_its_cut_is_masked_as_shown(terminal: bool) -> None:
    out = MaskedOutput(masker(), terminal)
    sent = b"".join(out.feed(piece) for piece in long_line_with_overwrite()) + out.flush()
    assert not found(sent), sent[-200:]  # before: the screen showed the card
    assert CARD not in shown(sent.decode())


SCREEN_TOKENS = [" bob.jones@example.com ", "4111 1111", " 1111 1111", "4111", "1111",
                 "plain", " ", "\r", "\n", "\r\n", "x" * 40, "\x1b[5C", "\x08"]  # fmt: skip
SCREEN = st.lists(st.sampled_from(SCREEN_TOKENS), max_size=40).map(
    lambda parts: "".join(parts).encode()
)


@settings(max_examples=300, deadline=None)
@given(SCREEN, st.lists(st.integers(1, 48), max_size=20), st.booleans())
def test_however_output_is_cut_and_paused_no_value_shows(
    data: bytes, cuts: list[int], terminal: bool
) -> None:
    pieces, i = [], 0
    for size in cuts:
        pieces.append(data[i : i + size])
        i += size
    pieces.append(data[i:])
    sent, _ = quietly(pieces, terminal)
    assert not found(sent), (data, sent)


async def test_a_card_printed_in_pieces_in_a_dbas_shell_is_masked(tmp_path: Path) -> None:
    """A dba outside pii-readers, a shell through proxy+PDP+sshd: `printf '4111 1111';
    sleep; printf ' 1111 1111'...` (before: each piece went out at the quiet flush, masked
    alone, and the screen showed the card whole)."""
    line = "printf '4111 1111'; sleep 0.3; printf ' 1111 1111'; sleep 0.3; echo; echo DO''NE\n"
    policy = ssh_policy(tmp_path, shell_unmasked=True)
    async with (
        ssh_stack(tmp_path, extra={"policies": policy}) as s,
        await s.connect(("dba",)) as conn,
    ):
        process = await conn.create_process(term_type="xterm", term_size=(100, 30))
        process.stdin.write(line)
        screen = await process.stdout.readuntil("DONE\r\n")
        process.stdin.write("exit\n")
        await process.wait()
    assert "**** **** **** 1111" in screen, screen
    output = screen.rsplit("DO''NE", 1)[1]  # after the typed line's echo
    assert CARD not in shown(output) and "4111 1111" not in output, output


# -- SFTP names under masks ---------------------------------------------------------------

NAMED_FILES = [f"{CARD}.txt", "bob.jones@example.com"]


async def test_sftp_names_of_a_dba_under_masks_are_masked(tmp_path: Path) -> None:
    """A dba outside pii-readers listed, resolved and read links by SFTP whose names are
    a card number and an e-mail address (before: sent as they are, while `ls` in an exec
    shows them masked); a name the detectors cannot read (not UTF-8) fails the listing;
    a dba in pii-readers still reads them plain."""
    data = tmp_path / "data"
    data.mkdir()
    for name in NAMED_FILES:
        (data / name).write_text("x\n")
    (data / "link").symlink_to(data / NAMED_FILES[0])
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / os.fsdecode(b"\xff4111 1111 1111 1111")).write_text("x\n")
    async with ssh_stack(tmp_path) as s:
        async with await s.connect(("dba",)) as conn, conn.start_sftp_client() as sftp:
            listed = await sftp.readdir(str(data))
            resolved = await sftp.realpath(str(data / NAMED_FILES[0]))
            target = await sftp.readlink(str(data / "link"))
        async with (
            await s.connect(("dba",)) as conn,
            conn.start_sftp_client(path_encoding=None) as raw_sftp,
        ):
            try:
                unreadable: object = await raw_sftp.readdir(str(odd).encode())
            except asyncssh.SFTPFailure as exc:
                unreadable = exc
        async with (
            await s.connect(("dba", "pii-readers")) as conn,
            conn.start_sftp_client() as sftp,
        ):
            plain = await sftp.listdir(str(data))
    sent = [*(n.filename for n in listed), *(n.longname for n in listed), resolved, target]
    sent = [n if isinstance(n, str) else os.fsdecode(n) for n in sent]
    for text in sent:
        assert "4111 1111" not in text and "bob.jones" not in text, sent
    assert any("**** **** **** 1111" in n for n in sent) and any("b***@" in n for n in sent)
    assert set(NAMED_FILES) <= set(plain)
    # before: the raw name's bytes, the card in them
    assert isinstance(unreadable, asyncssh.SFTPFailure), unreadable


# -- long command lines in the evidence ------------------------------------------------------

LONG_ARGS = (" " + "a" * 199) * 1000  # 200 KB of words
MANY_WORDS = " a" * 100_000  # 200 KB, 100,000 words


async def test_a_long_command_line_is_decided_whole_and_recorded_in_part(
    tmp_path: Path,
) -> None:
    """A reader's 200 KB exec lines: before, each was stored whole in its decision record
    and again in its command event (a few such lines a second swell the evidence without
    bound). Now each keeps its first 8 KiB with the size and SHA-256 of the whole; the
    decision still reads the whole line (its `rm` at the end denies it)."""
    allowed = "uptime" + LONG_ARGS
    denied = allowed + "; rm /tmp/sshp4-x"
    async with ssh_stack(tmp_path) as s:
        async with await s.connect(("readonly",)) as conn:
            first = await conn.run(allowed)
            second = await conn.run(denied)
        await s.proxy.settled()
        decisions = [d.body for d in await s.pdp.store.query(kind="decision")]
        events = await session_events(s.pdp.store)
    assert "denied" not in str(first.stderr), first.stderr
    assert second.exit_status == 1 and "rm /tmp" in str(second.stderr), second.stderr
    for line in (allowed, denied):
        whole = line.encode()
        digest = hashlib.sha256(whole).hexdigest()
        (record,) = [d for d in decisions if d.get("raw_sha256") == digest]
        assert len(record["raw"].encode()) <= 8192 and line.startswith(record["raw"])
        assert record["raw_bytes"] == len(whole) and record["raw_truncated"]
        (event,) = [e for e in events if e.get("details", {}).get("command_sha256") == digest]
        assert len(event["command"].encode()) <= 8192, len(event["command"])
    assert all(len(str(d.get("raw", ""))) <= 8192 for d in decisions)
    assert all(len(str(e.get("command", ""))) <= 8192 for e in events)


def test_a_long_line_costs_the_pdp_no_more_than_a_short_one_to_read(engine: Any) -> None:
    """A 200 KB line the fast readings do not take (a trailing space, a quote, a `$`...)
    went to bashlex, 20-50 us of the PDP's CPU a byte of short words: 10 s for the first
    (20 s and more for 1 MiB), every other decision waiting, and each such line was kept
    in the reading's cache. Now a line past MAX_SHELL_READ is malformed (denied) unless a
    fast reading takes it."""
    for line in ("uptime" + MANY_WORDS + " ", "uptime" + LONG_ARGS + " $x"):
        started = time.perf_counter()
        read = reading(line)
        assert time.perf_counter() - started < 2.0  # before: ~10 s
        assert "longer than" in read.get("malformed", ""), read.get("malformed")
    assert verdict(engine, "uptime" + LONG_ARGS + " ")["verdict"] == "deny"
    assert not reading("uptime" + LONG_ARGS).get("malformed")  # plain words: read


def test_a_line_of_many_words_costs_the_pdp_no_more_than_a_short_one_to_decide(
    engine: Any,
) -> None:
    """journalctl with 100,000 words (200 KB): the policy walks every word in several
    rules, 130 us a word: 13 s of the PDP's CPU for one decision (65 s for 1 MiB), and it
    was allowed. Now a line of more than MAX_WORDS words is malformed, denied at once."""
    for line in ("journalctl" + MANY_WORDS, "journalctl" + MANY_WORDS.replace(" a", " 'a'")):
        started = time.perf_counter()
        decided = verdict(engine, line)
        assert time.perf_counter() - started < 2.0  # before: ~13 s
        assert decided["verdict"] == "deny", decided["verdict"]


# -- a card behind a decoy digit run ---------------------------------------------------------

DECOYED = [
    # `printf '1111 1111 1111 1111 '; cat cards.txt` in a dba's shell, or such a log line:
    # the card detector took 1111 1111 1111 4111 (valid) and went on after it, so the
    # card that follows, short of its first group, was not found; masked, it read whole
    "1111 1111 1111 1111 4111 1111 1111 1111",
    "1111 1111 1111 1111    4111 1111 1111 1111",
]


@pytest.mark.parametrize("text", DECOYED)
def test_a_card_behind_a_decoy_digit_run_is_masked(text: str) -> None:
    masked, counts = masker().mask_text(text)
    assert CARD not in masked and counts["credit_card"] >= 1, masked
    assert not masker().mask_text(masked)[1], masked  # nothing left to find
    out = MaskedOutput(masker())
    assert CARD.encode() not in out.feed(text.encode() + b"\n") + out.flush()


def test_a_full_screen_programs_output_passes_as_it_is() -> None:
    """vim or top under a mask: screens drawn with cursor moves and carriage returns, no line
    end for tens of KiB, flushed when quiet; nothing in them is a value, so all of it goes
    out as sent (no CROSSED note past the line context)."""
    screen = b"".join(
        b"\x1b[%d;1H\x1b[2Krow %d: some text here, 12:30 ok\r\x1b[5C" % (i % 40 + 1, i)
        for i in range(1500)
    )
    pieces = [screen[i : i + 700] for i in range(0, len(screen), 700)]
    sent, out = quietly(pieces)
    assert sent == screen and not out.counts


# -- journalctl --grep: an oracle on what the mask hides -------------------------------------

# A reader's journal comes back masked, but --grep shows which entries match: `4111 1111
# 1111 10`, `... 11`, ... tells a card number digit by digit (no glob character needed)
SEARCHES = [
    "journalctl --grep '4111 1111 1111 10'",
    "journalctl -g 4111.1111",
    "journalctl --grep=4111",
    "journalctl -rg4111",
    "journalctl -u sshd --grep 'card 4'",
]


@pytest.mark.parametrize("line", SEARCHES)
def test_a_journal_search_under_a_mask_needs_approval(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] == "require_approval"  # before: mask
    assert verdict(engine, line, ("readonly", "pii-readers"))["verdict"] == "allow"
