"""SSH probe, part 21: an option given twice in the key mapping file.

The PDP maps a public key to a subject and groups by its own authorized_keys-like file
(pdp/domain/ssh_identity.py), read strictly: an option other than subject/groups, a key
whose type disagrees with its blob or a key mapped twice refuses every key login. An
option given twice was taken silently, the last one winning: a line
`subject="kim@x.org",groups="readonly",groups="dba"` (two edits merged, a line appended to
by a script) logged kim in as dba, where its first groups said readonly. Which of the two
the line means is not for the PDP to guess: the file is now refused, as any line that
does not read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ssh_harness import keygen
from test_ssh_proxy import ssh_stack
from test_ssh_publickey import ssh

from pdp.domain.identity import TokenRejected
from pdp.domain.ssh_identity import KeyIdentities, parse_line


def _twice(tmp: Path) -> tuple[Path, Path]:
    kim = keygen(tmp / "kim_key", "kim")
    mapping = tmp / "mapped_keys"
    mapping.write_text(
        f'subject="kim@x.org",groups="readonly",groups="dba" {(tmp / "kim_key.pub").read_text()}'
    )
    return kim, mapping


@pytest.mark.parametrize(
    "options",
    [
        'subject="kim@x.org",groups="readonly",groups="dba"',
        'subject="kim@x.org",subject="root@x.org"',
        'groups="dba",subject="kim@x.org",groups="dba"',
    ],
)
def test_an_option_given_twice_does_not_read(tmp_path: Path, options: str) -> None:
    key = (keygen(tmp_path / "k", "c").with_suffix(".pub")).read_text().strip()
    with pytest.raises(ValueError, match="given twice"):
        parse_line(f"{options} {key}")


@pytest.mark.parametrize(
    "options",
    [
        'subject="eve\u202emoc.elpmaxe@ecila"',  # displays as alice's address
        'subject="ali\u200bce@example.com"',  # a zero-width space inside
        'subject="kim\x00@x.org"',  # a NUL the store refuses
        'subject="kim@x.org",groups="reader\u2028dba"',  # a line separator in a group
    ],
)
def test_a_name_holding_a_control_or_format_character_does_not_read(
    tmp_path: Path, options: str
) -> None:
    """As a token's subject and groups are (identity.py): a mapping line whose subject or
    group prints as someone else's, or holds what the store refuses, is not read."""
    key = (keygen(tmp_path / "k", "c").with_suffix(".pub")).read_text().strip()
    with pytest.raises(ValueError, match="control or format character"):
        parse_line(f"{options} {key}")


def test_the_file_holding_one_refuses_every_key(tmp_path: Path) -> None:
    _, mapping = _twice(tmp_path)
    presented = (tmp_path / "kim_key.pub").read_text()
    with pytest.raises(TokenRejected):
        KeyIdentities().identify("ssh", str(mapping), presented)


@pytest.mark.integration
async def test_the_key_logs_in_as_no_one(tmp_path: Path) -> None:
    kim, mapping = _twice(tmp_path)
    async with ssh_stack(tmp_path, authorized_keys_file=str(mapping)) as stack:
        code, out, err = await ssh(stack, kim, "uptime")
        await stack.proxy.settled()
        opened = await stack.pdp.store.query(kind="session.open")
    assert code == 255 and not out, err
    assert stack.sshd.sessions_started() == 0
    assert not any(r.body.get("subject") == "kim@x.org" for r in opened), opened
