"""A login's password (the JWT) is not run through SASLprep character by character.

asyncssh SASLpreps every password before the proxy sees it: some milliseconds of the
event loop per JWT login, 100 ms for a 32 KB password sent before any login. The proxy's
SASLprep (proxies/ssh/passwords.py) returns printable ASCII as it is and gives anything
else to asyncssh's: equal to asyncssh's own for every printable ASCII character, random
ASCII texts, texts SASLprep maps, normalizes or refuses; a long password of other
characters is refused without the work. Through the real proxy, PDP and sshd: a token
login runs no stringprep over the token, and its exec runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import asyncssh.saslprep as asyncssh_saslprep
import pytest
from asyncssh.saslprep import SASLPrepError, saslprep
from test_ssh_proxy import ssh_stack

from proxies.ssh.passwords import MAX_OTHER_PASSWORD, MAX_PASSWORD, saslprep_with

quick = saslprep_with(saslprep)


def outcome(prep: Callable[[str], str], text: str) -> Any:
    try:
        return prep(text)
    except SASLPrepError:
        return SASLPrepError


def test_printable_ascii_is_what_saslprep_makes_of_it() -> None:
    for code in range(0x20, 0x7F):
        assert quick(chr(code)) == saslprep(chr(code)) == chr(code)
    rng = random.Random(26)
    alphabet = [chr(c) for c in range(0x20, 0x7F)]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        assert quick(text) == saslprep(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tab\there",  # a control character: refused
        "del\x7f",
        "caf\u00e9",  # NFKC leaves it
        "\ufb01le",  # NFKC maps the ligature
        "soft\u00adhyphen",  # mapped to nothing (B.1)
        "no\u00a0break",  # a non-ASCII space becomes a space (C.1.2)
        "\u0627\u0644\u0639",  # RandALCat at both ends
        "\u0627a",  # RandALCat, then L: refused
        "\ue000",  # private use: refused
        "a\nb",
    ],
)
def test_other_text_goes_to_saslprep(text: str) -> None:
    assert outcome(quick, text) == outcome(saslprep, text)


def test_a_long_password_of_other_characters_is_refused_without_the_work() -> None:
    called: list[str] = []

    def counted(text: str) -> str:
        called.append(text)
        return saslprep(text)

    prep = saslprep_with(counted)
    with pytest.raises(SASLPrepError):
        prep("\u00e9" * (MAX_OTHER_PASSWORD + 1))
    assert prep("\u00e9" * MAX_OTHER_PASSWORD) == "\u00e9" * MAX_OTHER_PASSWORD
    assert prep("a" * (4 * MAX_PASSWORD)) == "a" * (4 * MAX_PASSWORD)  # the PDP refuses it
    assert len(called) == 1


@pytest.mark.integration
async def test_a_token_login_runs_no_stringprep_over_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepped: list[int] = []
    original = asyncssh_saslprep._stringprep

    def counted(s: str, *args: Any) -> str:
        prepped.append(len(s))
        return original(s, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(asyncssh_saslprep, "_stringprep", counted)
    async with ssh_stack(tmp_path) as stack:
        token = stack.token()
        async with await stack.connect() as conn:
            result = await conn.run("uptime")
            assert result.exit_status == 0 and "load average" in result.stdout
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", stack.port, username="ann", password=token[:-4] + "AAAA",
                known_hosts=None, client_keys=None, agent_path=None, config=None,
                preferred_auth="password",
            )  # fmt: skip
    assert len(token) > 200
    assert not [n for n in prepped if n >= len(token) - 4]  # usernames only
