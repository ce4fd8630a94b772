"""SSH probe, part 5: exec lines the PDP's shell parser (bashlex) read otherwise than the
upstream's bash runs them, found by a differential fuzzer (each allowed line run by bash
with stub commands and a DEBUG trap, what ran compared with the parts the policy judged).

Each was allowed to a reader (group readonly) while the upstream's root shell ran a command
the policy never saw; now each is denied and nothing reaches sshd. Words of an allowed
command that bash expands into file names (`df --output=file /root/.*`: a listing of a
directory the reader cannot list) now wait for a person. And a masking slip: a value
overwritten on the screen was sent raw."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import stack_fixture
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.ssh.stream import MaskedOutput, mask_shown, shown

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)

# A command substitution (or backquotes, a process substitution) of more than one line:
# bashlex parses only its first line (its recursive parse takes one top-level command),
# so what follows a newline inside it was never a part; bash runs it all.
MULTI_LINE_SUBSTITUTIONS = [
    "df $(uptime\n{cmd}\n)",
    "df `uptime\n{cmd}`",
    "df <(uptime\n{cmd}\n)",
    "df >(uptime\n{cmd}\n)",
    'df "$(uptime\n{cmd})"',
    "df $(uptime;\n{cmd})",
    "df $(uptime)$(free\n{cmd})",
    "df $(uptime #)\n{cmd}\n)",  # a comment: `)` is in it, the substitution goes on
    "for x in $(uptime\n{cmd}); do df; done",
    "df > /dev/null $(uptime\n{cmd})",
]

# `((` is an arithmetic command to bash, two subshells to bashlex: `((df - _))` was the
# command `df - _`, while bash evaluates the variable `_` (the last word of the command
# before) as an expression, and an array subscript in it runs its command substitution.
ARITHMETIC_COMMANDS = [
    "df 'a[$({cmd})]'; (( df - _ ))",
    "uptime 'a[$({cmd})]' && ((df-_))",
    "df 'a[$({cmd})]' | ((_))",
    "df 'a[$({cmd})]'; ((df) ; uptime)",
]


# Backquotes: bash removes the backslash of `\$`, `\``, `\\` inside them before it reads
# their command; bashlex read it as written, `"\$(cmd)"` a quoted dollar sign, and bash ran
# `"$(cmd)"`.
BACKQUOTE_ESCAPES = [
    'df `uptime "\\$({cmd})"`',
    'df $(df `uptime "\\$({cmd})"`)',
    'for a in `uptime "\\$({cmd})"`; do df; done',
    "sh -c 'df `uptime \"\\$({cmd})\"`'",
]
ATTACKS = MULTI_LINE_SUBSTITUTIONS + ARITHMETIC_COMMANDS + BACKQUOTE_ESCAPES


@pytest.mark.parametrize("template", ATTACKS)
def test_what_bash_runs_and_bashlex_did_not_read_is_denied(engine: Any, template: str) -> None:
    line = template.format(cmd="touch /tmp/portcullis-p5")
    assert verdict(engine, line)["verdict"] == "deny", (line, reading(line))
    assert "malformed" in reading(line), reading(line)


@pytest.mark.parametrize(
    "line",
    [
        "df $(uptime)",
        "df $( uptime )",
        "df $(\nuptime)",
        "df `uptime`",
        'df "x`uptime`y"',
        'df "`uptime`"',
        "df $(uptime | free) $(uptime 2>/dev/null)",
        "( (uptime) )",
        "(uptime); (df)",
    ],
)
def test_substitutions_and_subshells_read_whole_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


stack = stack_fixture()


@pytest.mark.integration
async def test_commands_bashlex_did_not_read_never_reach_the_upstream(stack: Stack) -> None:
    marker = stack.tmp / "ran"
    templates = ATTACKS
    async with await stack.connect(READER) as conn:
        for template in templates:
            line = template.format(cmd=f"touch {marker}")
            result = await conn.run(line)
            assert result.exit_status == 1, (line, result.stdout, result.stderr)
            assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)
            assert not marker.exists(), line
    assert stack.sshd.sessions_started() == 0


# Words bash turns into the names of the files they match, anywhere root may look: a glob
# (and `$_` after one, the last word of the command before, globbed again).
LISTINGS = [
    "df --output=file /root/.*",
    "df --output=file /root/.ssh/* /home/*/.ssh/*",
    "df --output=file /ro?t/.bash?c",
    "df --output=file /[r]oot/.b*",
    "df '/root/.*' >/dev/null; df --output=file $_",
    "uptime -s /root/.*",
    "free ~root/.*",
]


@pytest.mark.parametrize("line", LISTINGS)
def test_words_expanded_into_file_names_need_approval(engine: Any, line: str) -> None:
    decided = verdict(engine, line)
    assert decided["verdict"] == "require_approval", (line, decided)
    assert any("names of files" in reason for reason in decided["reasons"]), decided


@pytest.mark.parametrize(
    "line", ["df -h / /var", "df --output=file,target /", "cat /var/log/*", "uptime -p"]
)
def test_words_that_name_what_they_say_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, line


@pytest.mark.integration
async def test_a_directory_listing_through_df_waits_for_a_person(stack: Stack) -> None:
    """Before: allowed (masked), the upstream's df printed each name /root/.* matched."""
    async with await stack.connect(READER) as conn:
        process = await conn.create_process("df --output=file /root/.*")
        said = await process.stderr.readuntil("--reason '...'")
        assert "names of files" in said, said
        process.close()
    assert stack.sshd.sessions_started() == 0


# -- a value written, then overwritten -------------------------------------------------------

# An e-mail address written, then overwritten by a carriage return's line (a progress
# bar's redraw) — masking the address made that line shorter, so the redraw of the masked
# text showed a card-like run: mask_shown fell back to the screen's text (no address on
# it) and said it found nothing, and MaskedOutput, finding nothing, sent the raw bytes,
# the address in them (kept by any client that records or pipes them: `ssh host cmd >
# file`). Found by test_ssh_probe_p4's Hypothesis test, in three pieces with pauses.
OVERWRITTEN_ADDRESS = b" bob.jones@example.com 4111 1111\r 4111 111111111111\r bob."


def _masker() -> Masker:
    rules = (MaskRule("", "email", "partial"), MaskRule("", "credit_card", "partial"))
    return Masker(rules, b"k" * 32)


def _values(sent: bytes) -> Counter[str]:
    text = sent.decode()
    return _masker().mask_text(text)[1] + _masker().mask_text(shown(text))[1]


def test_a_value_overwritten_on_the_screen_is_not_sent_raw() -> None:
    masked, counts = mask_shown(_masker(), OVERWRITTEN_ADDRESS.decode())
    assert counts["email"] == 1, counts
    assert "bob.jones@example.com" not in masked
    for terminal in (False, True):
        out = MaskedOutput(_masker(), terminal)
        sent = out.feed(OVERWRITTEN_ADDRESS + b"\n") + out.flush()
        assert not _values(sent), sent
        assert out.counts["detector:email"] == 1, out.counts


def test_a_value_overwritten_across_pauses_is_not_sent_raw() -> None:
    out = MaskedOutput(_masker(), terminal=True)
    sent = b""
    for piece in (b" bob.jones@example.", OVERWRITTEN_ADDRESS[19:], b"jones@example.com "):
        sent += out.feed(piece) + out.flush(final=False)
    sent += out.flush()
    assert b"bob.jones@example.com" not in sent, sent
    assert not _values(sent), sent
