"""Evidence probe 12 (helper auditsec4): a recording cannot print the replay's own lines.

Attack (an SSH user, or the server they reach, writing to their own recorded terminal):
`portcullis replay SESSION` shows a recorded shell after the timeline and adds lines of
its own in the same text: each recording's heading, `--- end of recording ---`, and
`[typed, not echoed: ...]` for a line typed under `stty -echo`. The recording printed
them just as well: `--- end of recording ---` and then more output the auditor took for
something after the session, a `[typed, not echoed: sudo ...]` of a command never typed
(or to bury the real one among fakes), the heading of a second recording; started on a
row of its own even with no line feed by filling the row before it. Each line the replay
adds now ends in a seal drawn for that replay (`#` and 8 hex digits), named before the
first recording and on the replay's last line: the recording was made before and cannot
print it. Shown as text (the default) and as a terminal draws it (--raw).

Real PDP (gRPC, SQLite store), the `portcullis replay` CLI on a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from google.protobuf import struct_pb2
from pdp_harness import open_session, pdp_stub, replay_on_a_terminal, running_pdp, token
from test_evidence import make_env

from portcullis.v1 import pdp_pb2

HEADING = "--- terminal, channel 0 (decision d-0): every byte shown, control sequences as escapes"
FORGED = (
    "$ ls\r\nnotes.txt\r\n"
    "--- end of recording ---\r\n"
    "[typed, not echoed: sudo rm -rf /var/log]\r\n"
    f"{HEADING} (--raw to play it as a terminal draws it) ---\r\n"
    f"{' ' * 100}"  # fills the auditor's row (100 columns): what follows starts a row
    "--- end of recording --- #00000000\r\n"
    "$ "
)
SEAL = re.compile(r"\(the lines this replay adds end in (#[0-9a-f]{8}),")


async def _recorded(tmp_path):
    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    details = struct_pb2.Struct()
    details.update(
        {"kind": "ssh.asciicast", "channel": 0, "events": [
            [0.1, "o", FORGED[:50]], [0.2, "o", FORGED[50:]],
            [0.3, "i", "cat /etc/shadow\r"],  # not echoed: the real typed line
            [0.4, "o", "\r\n$ "],
        ]}
    )  # fmt: skip
    async with running_pdp(env.config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(env.config))
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id,
                events=[
                    pdp_pb2.SessionEvent(
                        time=1.0, direction="upstream", type="response", details=details
                    )
                ],
            )
        )
    return env, opened.session_id


def _lines(shown: bytes) -> list[str]:
    """The lines sent, each as the row shows it (--raw: a row erased first, CR)."""
    text = shown.decode("utf-8", "replace").replace("\r\x1b[2K", "")
    return [line.rstrip("\r") for line in text.split("\n")]


@pytest.mark.parametrize("raw", [False, True], ids=["text", "raw"])
async def test_the_replay_s_own_lines_carry_a_seal_the_recording_cannot_print(tmp_path, raw):
    env, session_id = await _recorded(tmp_path)
    options = ("--raw",) if raw else ()
    shown = await asyncio.to_thread(replay_on_a_terminal, env.config_path, session_id, 30, *options)
    again = await asyncio.to_thread(replay_on_a_terminal, env.config_path, session_id, 30, *options)
    lines = _lines(shown)
    seals = [m.group(1) for m in map(SEAL.search, lines) if m]
    assert len(seals) == 1, shown
    seal = seals[0]
    assert seal not in again.decode("utf-8", "replace")  # drawn afresh for each replay
    sealed = [line for line in lines if line.endswith(" " + seal)]
    assert len(sealed) == 3, sealed
    assert sealed[0].startswith("--- terminal, channel 0 (decision ")
    # (the typed line is where its Enter was; after a --raw play, listed after the end)
    assert sorted(sealed[1:]) == sorted(
        [f"--- end of recording --- {seal}", f"[typed, not echoed: cat /etc/shadow] {seal}"]
    ), sealed
    # the replay's last line is its own: a recording cannot draw after it (--raw: nor
    # leave what it drew below on the screen)
    if raw:
        assert shown.endswith(b"\x1b[J")
        lines = _lines(shown.removesuffix(b"\x1b[J"))
    assert [line for line in lines if line.strip()][-1].endswith(seal)
    # what the recording printed is there, as printed, and carries no seal
    text = shown.decode("utf-8", "replace")
    assert "[typed, not echoed: sudo rm -rf /var/log]" in text
    assert text.count("--- end of recording ---") == 3
    forged = [line for line in lines if "sudo rm -rf" in line or "#00000000" in line]
    assert forged and not any(line.endswith(seal) for line in forged)
