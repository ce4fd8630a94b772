"""Evidence probe 17 (helper auditsec9): a verification report that is OK is inert too.

Attack (whoever hands an auditor a bundle, signed with a key of their own; or INSERT
access to the audit store, once acknowledged): a record whose kind holds a terminal
escape (`decision\\x1b[8m`, "conceal"). A failing report already drew each problem inert
(Problem.describe), but an OK one printed its counts raw: a bundle that withholds values
names each withheld kind in its WITHHELD line, so the escape reached the auditor's
terminal and hid everything after it, the `key: NOT PINNED` warning of a bundle verified
without --public-key included (a bundle its sender signed with a key of their own
verifies). Every line of the report is now drawn inert, as the problems are: the kind
shows as `decision\\x1b[8m`.

Real components: a PDP with its SQLite store (the sender's), its exported bundle and the
`portcullis audit verify` CLI.
"""

from __future__ import annotations

import asyncio

from pdp_harness import running_pdp
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from pdp.evidence.bundle import export_bundle
from portcullis.config import load_config

KIND = "decision\x1b[8m"


async def test_a_kind_holding_an_escape_is_shown_inert_in_an_ok_report(tmp_path):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app:  # (the sender's own PDP and key)
        await app.store.append(KIND, {"raw": "x"}, session_id="s-1", subject="eve")
        out = tmp_path / "withheld.tar.gz"
        await export_bundle(app.store, app.signer, out, withhold_values=True)
    said = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(out))
    assert said.returncode == 0, said.stdout + said.stderr
    assert "\x1b" not in said.stdout, said.stdout
    assert "decision\\x1b[8m" in said.stdout and "key: NOT PINNED" in said.stdout
