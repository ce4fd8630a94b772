"""Probe P2: exec lines the PDP read differently from the remote shell, and the shipped
policy's verdict on them for a reader (group readonly).

Each case is an attack found by probing (pdp/domain/ssh_input.py): a line the policy
allowed while the upstream's shell (bash for the login, dash for `sh`) ran a command the
policy never saw, or read a file the policy never saw. Each must now be denied (or need
approval), and what ran before is named beside it. tests/test_ssh_probe_stack.py runs the
same lines through the real proxy and sshd."""

from __future__ import annotations

from typing import Any

import pytest
from policy_harness import shipped_engine

from pdp.domain.ssh_input import ssh_command
from pdp.engine.opa import DECISION_PATH, evaluate

engine = pytest.fixture(scope="module")(shipped_engine)


def verdict(engine: Any, line: str, groups: tuple[str, ...] = ("readonly",)) -> dict[str, Any]:
    policy_input = {
        "identity": {"subject": "mallory@example.com", "groups": list(groups)},
        "connection": {"name": "web-1", "type": "ssh"},
        "command": {"kind": "ssh.exec", "raw": line, "ssh": ssh_command("ssh.exec", line, {})},
    }
    result: dict[str, Any] = evaluate(engine, policy_input, DECISION_PATH)
    return result


ALLOWED = ("allow", "mask")  # a reader's allowed exec is masked (its output's detectors)


def reading(line: str) -> dict[str, Any]:
    return ssh_command("ssh.exec", line, {})


# ${...} holding a command substitution: bashlex keeps the braces' text as one parameter
# node and never parses inside it; bash runs the command while expanding the word
PARAMETER_LINES = [
    "uptime ${x:-$(touch /tmp/p2-m)}",
    'uptime "${x:-$(touch /tmp/p2-m)}"',
    "uptime ${x:-`touch /tmp/p2-m`}",
    "uptime ${x[$(touch /tmp/p2-m)]}",
    "uptime ${x:$(touch /tmp/p2-m)}",
    "uptime ${x/a/$(touch /tmp/p2-m)}",
    "uptime ${x:=$(touch /tmp/p2-m)}",
    "df <<< ${x:-$(touch /tmp/p2-m)}",
    "for f in ${x:-$(touch /tmp/p2-m)}; do uptime; done",
    "sh -c 'uptime ${x:-$(touch /tmp/p2-m)}'",
    "journalctl ${x:+--vacuum-size=1K}",
]


@pytest.mark.parametrize("line", PARAMETER_LINES)
def test_a_parameter_expansion_with_an_operator_is_not_read(engine: Any, line: str) -> None:
    assert "parameter expansion" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


@pytest.mark.parametrize("line", ["uptime $HOME", "uptime ${HOME}", "uptime ${1} $# ${#}"])
def test_a_plain_parameter_is_still_read(engine: Any, line: str) -> None:
    assert "malformed" not in reading(line)
    assert verdict(engine, line)["verdict"] in ALLOWED


# a `for` loop's words: bashlex reads a word wholly in '...' as quoted throughout
# ('a'$(cmd)'b'), and those words were never read twice as a command's words are
@pytest.mark.parametrize(
    "line",
    [
        "for x in 'a'$(touch /tmp/p2-m)'b'; do uptime; done",
        "for x in 'a'`touch /tmp/p2-m`'b'; do uptime; done",
    ],
)
def test_a_for_loops_words_are_read_twice(engine: Any, line: str) -> None:
    assert "does not read the same twice" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


# a compound command's redirections ({ ...; } > f, ( ... ) > f, if/for/while ... > f) were
# never looked at: the shell opens them around every command inside
@pytest.mark.parametrize(
    "line",
    [
        "{ uptime; } > /etc/motd",
        "(uptime) >> /root/.ssh/authorized_keys",
        "for x in a; do uptime; done > /etc/motd",
        "if uptime; then df; fi > /etc/motd",
        "while false; do uptime; done > /etc/motd",
        "{ cat /var/log/syslog; } < /etc/shadow",
        "{ { uptime; } ; } > /etc/motd",
    ],
)
def test_a_compounds_redirections_apply_to_its_commands(engine: Any, line: str) -> None:
    parts = reading(line)["parts"]
    assert parts and all(p["redirects"] for p in parts), parts
    assert verdict(engine, line)["verdict"] == "deny"


def test_a_compound_redirected_to_dev_null_is_allowed(engine: Any) -> None:
    assert verdict(engine, "{ uptime; df; } 2>/dev/null")["verdict"] in ALLOWED


# xargs: the replace string (-I, -i, --replace) in a word makes it computed from the input,
# the command name included; --replace, --eof and --max-lines take a value only after `=`
@pytest.mark.parametrize(
    "line",
    [
        "xargs -I df df /tmp/p2-m",
        "xargs -Idf df /tmp/p2-m",
        "xargs -idf df /tmp/p2-m",
        "xargs --replace=df df /tmp/p2-m",
        "xargs -i {} /tmp/p2-m",
        "xargs -I '' uptime",
        "xargs -I% sh -c 'uptime %'",
    ],
)
def test_xargs_replace_strings_are_computed_words(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] == "deny", reading(line)


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ("xargs --replace touch df /tmp/p2-m", ["touch", "df", "/tmp/p2-m"]),
        ("xargs --eof touch df", ["touch", "df"]),
        ("xargs --max-lines touch df", ["touch", "df"]),
        ("xargs --replace=X -n1 df", ["df"]),
        ("xargs -I X -n 2 uptime", ["uptime"]),
    ],
)
def test_xargs_optional_values_are_read_as_gnu_xargs_reads_them(
    engine: Any, line: str, argv: list[str]
) -> None:
    (part,) = reading(line)["parts"]
    assert part["argv"] == argv
    assert part["more_args"] is True
    if argv[0] == "touch":
        assert verdict(engine, line)["verdict"] == "deny"


@pytest.mark.parametrize(
    "line",
    [
        "xargs -a /etc/shadow df",
        "xargs -a/etc/shadow df",
        "xargs --arg-file=/etc/shadow df",
        "xargs --arg-file /etc/shadow -n1 uptime",
        "xargs -0 -a /root/.ssh/id_ed25519 free",
    ],
)
def test_xargs_reading_a_file_is_a_read_of_that_file(engine: Any, line: str) -> None:
    (part,) = reading(line)["parts"]
    assert [(r["kind"], r["op"]) for r in part["redirects"]] == [("read", "xargs -a")]
    result = verdict(engine, line)
    assert result["verdict"] == "deny"
    assert any("only /dev/null may be redirected" in r for r in result["reasons"])


def test_xargs_may_read_dev_null(engine: Any) -> None:
    assert verdict(engine, "xargs -a /dev/null uptime")["verdict"] in ALLOWED


# journalctl words appended by xargs may be options that write
def test_words_xargs_appends_to_journalctl_need_approval(engine: Any) -> None:
    line = "journalctl -u ssh -o cat | xargs -n1 journalctl"
    assert verdict(engine, line)["verdict"] == "require_approval"
    # df names each word it refuses, one line each: outside pii-readers, what xargs cuts
    # from masked output needs approval (tests/test_ssh_probe_p12.py)
    assert verdict(engine, "cat /var/log/syslog | xargs -n1 df")["verdict"] == "require_approval"
    split = verdict(engine, "cat /var/log/syslog | xargs -n1 df", ("pii-readers",))
    assert split["verdict"] in ALLOWED


# dash (/bin/sh on Debian) reads `&>` and `$'...'` otherwise than bash, which bashlex reads
@pytest.mark.parametrize(
    "line",
    [
        "sh -c 'uptime &>/dev/null touch /tmp/p2-m'",
        "sh -c 'uptime &>>/dev/null touch /tmp/p2-m'",
        "uptime &>/dev/null touch /tmp/p2-m",
        r"sh -c uptime\ \$\'\\\'\;touch\ /tmp/p2-m\;#\'",
        r"dash -c uptime\ \$\'\\\'\;touch\ /tmp/p2-m",
        'uptime $"x"',
    ],
)
def test_what_bash_and_dash_read_differently_is_not_read(engine: Any, line: str) -> None:
    assert reading(line).get("malformed"), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


@pytest.mark.parametrize("shell", ["zsh", "ksh", "mksh"])
def test_scripts_of_shells_of_another_grammar_are_not_read(engine: Any, shell: str) -> None:
    line = f"{shell} -c 'uptime'"
    assert shell in reading(line).get("malformed", "")
    assert verdict(engine, line)["verdict"] == "deny"
