"""Public-key login to the SSH proxy, mapped to an identity by the PDP's own configuration
(the connection's authorized_keys_file) — against a real sshd, a real PDP and OpenSSH
`ssh -i`.

What it tries to break: a key that is not mapped logs in; a mapped key's session runs as
anyone but the file's subject and groups; a proxy that claims a subject (or presents an
unmapped key) gets an identity from the PDP; a refused login reaches the upstream.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ssh_harness import askpass, client_options, keygen, run_client
from test_ssh_proxy import Stack, ssh_stack

from pdp.domain.ssh_identity import MappedKey, parse_line
from proxies.runtime.pdp_client import SessionRefused
from proxies.runtime.session import ProxySession

pytestmark = pytest.mark.integration


def key_options(key: Path) -> list[str]:
    # before client_options: ssh keeps an option's first value
    return [
        "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "PubkeyAuthentication=yes",
        "-o", "PreferredAuthentications=publickey",
    ]  # fmt: skip


def mapped(tmp: Path) -> tuple[Path, Path, Path]:
    """Keys of kim (mapped: dba, pii-readers) and of eve (not mapped), and the file."""
    kim, eve = keygen(tmp / "kim_key", "kim"), keygen(tmp / "eve_key", "eve")
    mapping = tmp / "mapped_keys"
    mapping.write_text(
        "# who each key is\n"
        f'subject="kim@x.org",groups="dba,pii-readers" {(tmp / "kim_key.pub").read_text()}'
    )
    return kim, eve, mapping


async def ssh(stack: Stack, key: Path, command: str) -> tuple[int, bytes, bytes]:
    env = askpass(stack.tmp, "no token")  # a password prompt would get no token
    argv = ["ssh", *key_options(key), *client_options(stack.port), "-p", str(stack.port),
            "anyone@127.0.0.1", command]  # fmt: skip
    return await run_client(argv, env)


def test_mapping_lines_read_strictly(tmp_path: Path) -> None:
    key = (keygen(tmp_path / "k", "c").with_suffix(".pub")).read_text().strip()
    line = parse_line(f'subject="kim@x.org",groups="dba, pii-readers" {key}')
    assert isinstance(line, MappedKey) and line.subject == "kim@x.org"
    assert line.groups == ("dba", "pii-readers") and line.fingerprint.startswith("SHA256:")
    for bad in (
        key,  # no subject
        f'subject="" {key}',
        f'subject="a",command="sh" {key}',  # an option not understood
        f'subject="a" ssh-rsa {key.split()[1]}',  # the blob is an ed25519 key
        'subject="a" ssh-ed25519 not-base64!',
    ):
        with pytest.raises(ValueError):
            parse_line(bad)


async def test_a_mapped_key_logs_in_as_its_subject(tmp_path: Path) -> None:
    kim, eve, mapping = mapped(tmp_path)
    async with ssh_stack(tmp_path, authorized_keys_file=str(mapping)) as stack:
        code, out, err = await ssh(stack, kim, "uptime")
        assert code == 0 and b"load average" in out, err
        code, out, err = await ssh(stack, eve, "uptime")
        assert code == 255 and not out, err
        # a token still logs in beside keys
        env = askpass(stack.tmp, stack.token())
        base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
        token_code, _, token_err = await run_client([*base, "uptime"], env)
        assert token_code == 0, token_err
        await stack.proxy.settled()
        opened = await stack.pdp.store.query(kind="session.open")
        decisions = await stack.pdp.store.query(kind="decision")
    assert stack.sshd.sessions_started() == 2
    subjects = sorted(str(r.body.get("subject")) for r in opened)
    assert subjects == ["ann@x.org", "kim@x.org"], subjects
    execs = [d.body for d in decisions if d.body.get("kind") == "ssh.exec"]
    assert all(e["verdict"] == "allow" for e in execs)


async def test_the_pdp_maps_the_key_never_the_proxys_claim(tmp_path: Path) -> None:
    kim, _eve, mapping = mapped(tmp_path)
    async with ssh_stack(tmp_path, authorized_keys_file=str(mapping)) as stack:
        runtime = stack.proxy.runtime
        kim_text = (tmp_path / "kim_key.pub").read_text().strip()
        eve_text = (tmp_path / "eve_key.pub").read_text().strip()
        # a proxy that claims a subject and groups beside a mapped key: the file's win
        session = ProxySession(runtime, "127.0.0.1:1", "test")
        grant = await session.open(
            "", {"ssh_public_key": kim_text, "subject": "root@x.org", "groups": "admins"}
        )
        assert (grant.subject, grant.groups) == ("kim@x.org", ("dba", "pii-readers"))
        await session.close("test")
        # an unmapped key, or none, with a claimed subject: no session
        for attributes in ({"ssh_public_key": eve_text, "subject": "kim@x.org"},
                           {"subject": "kim@x.org"},
                           {"ssh_public_key": "ssh-ed25519 AAAA"}):  # fmt: skip
            with pytest.raises(SessionRefused):
                await ProxySession(runtime, "127.0.0.1:1", "test").open("", attributes)
        # a key removed from the file stops working at the next login
        mapping.write_text("")
        code, _, err = await ssh(stack, kim, "uptime")
        assert code == 255, err
    assert stack.sshd.sessions_started() == 0


async def test_no_mapping_file_no_public_key_login(tmp_path: Path) -> None:
    kim, _, _ = mapped(tmp_path)
    async with ssh_stack(tmp_path) as stack:
        code, _, err = await ssh(stack, kim, "uptime")
        with pytest.raises(SessionRefused):
            kim_text = (tmp_path / "kim_key.pub").read_text().strip()
            await ProxySession(stack.proxy.runtime, "127.0.0.1:1", "t").open(
                "", {"ssh_public_key": kim_text}
            )
    assert code == 255 and b"Permission denied" in err, err
