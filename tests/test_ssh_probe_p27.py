"""SSH probe, part 27: what a reader's environment requests reach (against the real sshd).

The client's `env` channel requests (LANG, LC_* holding a command, BASH_ENV, LD_PRELOAD,
BASH_FUNC_x%%, PATH) are not decided by the policy, so none of them may reach the
upstream, whatever its sshd accepts (AcceptEnv *): a reader's `printenv` there shows
only what sshd sets itself. Passes on HEAD: a regression guard.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_ssh_proxy
from ssh_harness import Sshd
from test_ssh_proxy import ssh_policy, ssh_stack

pytestmark = pytest.mark.integration

READER = ("readonly",)
SENT = {
    "LANG": "C.UTF-8",
    "LC_ALL": "$(touch /tmp/portcullis-p27)",
    "LC_PORTCULLIS": "x",
    "BASH_ENV": "/tmp/portcullis-p27.sh",
    "LD_PRELOAD": "/tmp/portcullis-p27.so",
    "BASH_FUNC_uptime%%": "() { id; }",
    "PATH": "/tmp/portcullis-p27:/usr/bin",
    "PORTCULLIS_P27": "sent",
}


class AnyEnvSshd(Sshd):
    """The harness's sshd accepting every variable a client sends."""

    def config(self) -> str:
        return super().config().replace("AcceptEnv BASH_ENV LD_PRELOAD", "AcceptEnv *")


async def test_no_client_variable_reaches_the_upstream(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, "printenv")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(test_ssh_proxy, "Sshd", AnyEnvSshd)
        async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
            assert "AcceptEnv *" in (stack.sshd.dir / "sshd_config").read_text()
            async with await stack.connect(READER, env=SENT) as conn:
                shown = await conn.run("printenv")
                assert shown.exit_status == 0, shown.stderr
                process = await conn.create_process("printenv", env=SENT)
                per_channel = str((await process.wait()).stdout)
    for out in (str(shown.stdout), per_channel):
        names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
        assert not names & {"LC_ALL", "LC_PORTCULLIS", "BASH_ENV", "LD_PRELOAD", "PORTCULLIS_P27"}
        assert not any(n.startswith("BASH_FUNC") for n in names), names
        assert "portcullis-p27" not in out and "C.UTF-8" not in out, out
