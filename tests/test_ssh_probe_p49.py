"""SSH probe, part 49: a private key in a log, given whole to a reader through the mask.

A reader's `cat /var/log/...` (and journalctl's entries) pass the detectors, which read
each chunk of output a line at a time with the line before it. A PEM private key is a
`-----BEGIN OPENSSH PRIVATE KEY-----` line, lines of base64 and its END line: no line of
it is a token to the token detector, so a key a log holds (a provisioning script's
output, an application logging its configuration) went to the reader whole, and from it
a login to wherever the key opens.

The proxy's mask now takes a key's body out of the output, a line at a time, however the
output is cut into chunks (proxies/ssh/stream.KeyBlocks), wherever the token detector
masks (outside pii-readers): each line between the BEGIN and END lines is a note, and the
key is counted as a token masked.

Real components: sshd, a PDP on the shipped policy, the SSH proxy, asyncssh's client,
ssh-keygen (the key).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from test_ssh_probe_p48 import log_file
from test_ssh_proxy import ssh_stack

from pdp.domain.recordings import session_events
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.ssh.stream import KEY_LINE, MaskedOutput

READER = ("readonly",)
SENDGRID = "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"


def _key(tmp_path: Path) -> str:
    path = tmp_path / "id_p49"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(path)],
                   check=True)  # fmt: skip
    return path.read_text()


@pytest.mark.integration
async def test_a_private_key_in_a_log_is_masked_for_a_reader(tmp_path: Path) -> None:
    key = _key(tmp_path)
    body = key.splitlines()[1:-1]
    with log_file("p49", tmp_path, f"provisioning web-2\n{key}done\n") as logged:
        async with ssh_stack(tmp_path) as stack:
            async with await stack.connect(READER) as conn:
                shown = await conn.run(f"cat {logged}")
            await stack.proxy.settled()
            events = await session_events(stack.pdp.store)
    assert shown.exit_status == 0, shown.stderr
    out = str(shown.stdout)
    assert [line for line in body if line in out] == []
    assert out.startswith("provisioning web-2\n-----BEGIN OPENSSH PRIVATE KEY-----")
    assert out.endswith("-----END OPENSSH PRIVATE KEY-----\ndone\n")
    (command,) = [e for e in events if e.get("type") == "command"]
    assert command["details"]["masked"].get("detector:token", 0) >= 1, command


def test_a_key_cut_anywhere_is_masked_and_a_cut_short_key_ends_its_body() -> None:
    masker = Masker([MaskRule(detector="token", strategy="partial")], b"k" * 32)
    key = (b"-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\n"
           b"DEK-Info: AES-128-CBC,0A1B\r\n\r\nMIIEowIBAAKCAQEAx5p3b9Qk2fJ8yV3aZt7nHh0\r\n"
           b"-----END RSA PRIVATE KEY-----\r\nuptime\r\n")  # fmt: skip
    for step in (1, 5, 64, len(key)):
        for terminal in (False, True):
            mask = MaskedOutput(masker, terminal)
            out = b"".join(mask.feed(key[i : i + step]) for i in range(0, len(key), step))
            out += mask.flush()
            assert b"MIIEow" not in out, (step, out)
            assert out.endswith(b"-----END RSA PRIVATE KEY-----\r\nuptime\r\n")
    mask = MaskedOutput(masker)
    cut = mask.feed(b"-----BEGIN PRIVATE KEY-----\nMIIEow\n") + mask.feed(b"the log goes on\n")
    assert b"MIIEow" not in cut and cut.endswith(b"the log goes on\n")
    # a key the detectors masked whole on one line ends there: what follows is shown
    mask = MaskedOutput(masker)
    keys = mask._keys
    assert keys is not None
    assert keys.filter(b"-----BEGIN RSA PRIVATE KEY-----****AB==-----END RSA PRIVATE KEY-----\n"
                       b"done\n").endswith(b"\ndone\n")  # fmt: skip
    assert keys.filter(b"-----BEGIN RSA PRIVATE KEY-----\nAB==\n") == (
        b"-----BEGIN RSA PRIVATE KEY-----\n" + KEY_LINE + b"\n"
    )


def test_tokens_and_a_private_key_in_one_value_are_masked() -> None:
    # (needs /work/notes/patches/sshsec16-3.patch: proto/portcullis/masking.py, the detectors
    # every proxy's values pass: a key in one SQL value, JSON field or HTTP body)
    masker = Masker([MaskRule(detector="token", strategy="redact")], b"k" * 32)
    for secret in ("hvs.CAESIJ8yV3aZt7nHh0oYp1sVQ7nT2dF4Lr8kXw6mZc1Jb3pQGh4KHGh2cy5",
                   "glpat-abcdefghij1234567890", "npm_abcdefghijklmnopqrstuvwxyz0123456789",
                   SENDGRID):  # fmt: skip
        masked = masker.mask_text(f"logged {secret} ok")[0]
        assert secret[4:] not in masked and masked.startswith("logged [REDACTED"), masked
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEowIBAAKCAQEAx5p3b9Qk2f\n-----END PRIVATE KEY-----"
    for value in (pem, pem.replace("\n", "\\n")):  # (as a JSON string holds it)
        masked, counts = masker.mask_text(value)
        assert "MIIEow" not in masked and counts["token"] == 1, masked
    public = "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----"
    assert masker.mask_text(public)[0] == public


def test_a_private_key_in_base64_is_masked(tmp_path: Path) -> None:
    # (needs /work/notes/patches/sshsec16-4.patch: a kubeconfig's client-key-data, a
    # Kubernetes Secret's tls.key, a key in an environment variable: PEM, base64-encoded)
    masker = Masker([MaskRule(detector="token", strategy="redact")], b"k" * 32)
    encoded = base64.b64encode(_key(tmp_path).encode()).decode()
    for line in (f"client-key-data: {encoded}", f'{{"tls.key": "{encoded}"}}'):
        masked, counts = masker.mask_text(line)
        assert encoded[20:60] not in masked and counts["token"] == 1, masked
    certificate = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0B\n").decode()
    assert masker.mask_text(f"client-certificate-data: {certificate}")[0].endswith(certificate)
