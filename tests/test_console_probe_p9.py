"""Probes of the console's replay, helper idsec6: the masked value in the statement.

Attack (an auditor outside pii-readers, or anyone reading their screen): a reader's
`SELECT email FROM customers WHERE ssn = '123-45-6789'` had its result masked, yet the
session replay showed the statement as recorded, the SSN (the very value the masking kept
from the reader) in its WHERE clause; a statement with an email or card literal showed it
too. DESIGN.md: sensitive values are for pii-readers only. Now, to a reader outside
pii-readers, a masked statement's literals are all [masked] and any other statement's
literals in which a value detector finds a value; pii-readers see the statement as
recorded (pdp.console.literals).
"""

from __future__ import annotations

import json
import time

from pdp_harness import open_session, pdp_stub, token
from test_console_probe_p1 import _http, console_pdp_fixture, sign_in

from portcullis.v1 import pdp_pb2

pdp = console_pdp_fixture()

MASKED_STATEMENT = "SELECT email FROM customers WHERE ssn = '123-45-6789' AND id = 4242"
OTHER_STATEMENT = "SELECT id FROM orders WHERE status = 'shipped' AND note = 'ann@example.com'"


async def _recorded(pdp) -> str:
    user = token(pdp.config, "bob@example.com", ("readonly",))
    now = time.time()
    events = [
        {"time": now, "direction": "upstream", "type": "command", "verdict": "mask",
         "command": MASKED_STATEMENT,
         "details": {"tag": "SELECT 1", "rows": 1, "protocol": "simple",
                     "masked": {"email": 1}}},
        {"time": now + 0.1, "direction": "upstream", "type": "command", "verdict": "allow",
         "command": OTHER_STATEMENT,
         "details": {"tag": "SELECT 0", "rows": 0, "protocol": "simple"}},
        {"time": now + 0.2, "direction": "upstream", "type": "command", "verdict": "allow",
         "command": "SELECT id FROM customers WHERE id = $1",
         "details": {"protocol": "extended", "error": "22P02 invalid input syntax for type"
                     " integer: \"123-45-6789\""}},
    ]  # fmt: skip
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, user)
        await stub.RecordEvents(pdp_pb2.RecordEventsRequest(
            session_id=opened.session_id, events_json=json.dumps(events)))  # fmt: skip
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=opened.session_id))
    return opened.session_id


async def _replay(pdp, sid: str, groups: str, entry: str = "") -> str:
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", groups)
        query = f"?entry={entry}" if entry else ""
        async with http.get(f"{pdp.base}/console/sessions/{sid}{query}") as r:
            assert r.status == 200
            return await r.text()


async def test_an_auditor_outside_pii_readers_sees_no_masked_value(pdp):
    sid = await _recorded(pdp)
    for entry in ("", "0", "1", "2"):
        page = await _replay(pdp, sid, "auditor", entry)
        assert "123-45-6789" not in page and "4242" not in page
        assert "ann@example.com" not in page and "ann@example" not in page
    page = await _replay(pdp, sid, "auditor")
    assert "WHERE ssn = [masked] AND id = [masked]" in page
    assert "status = &#x27;shipped&#x27;" in page or "status = &#39;shipped&#39;" in page
    assert "note = [masked]" in page


async def test_pii_readers_see_the_statement_as_recorded(pdp):
    sid = await _recorded(pdp)
    page = await _replay(pdp, sid, "auditor,pii-readers")
    assert "123-45-6789" in page and "ann@example.com" in page
    assert "[masked]" not in page


async def test_a_denied_commands_value_is_masked_on_the_decisions_page(pdp):
    from pdp_harness import decide_sql

    reader = token(pdp.config, "bob@example.com", ("readonly",))
    async with pdp_stub(pdp.address) as stub:
        sid = (await open_session(stub, reader)).session_id
        probing = "SELECT id FROM customers WHERE ssn LIKE '123-45-6789%'"
        denied = await decide_sql(stub, sid, probing)
        assert denied.verdict == pdp_pb2.DENY
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        async with http.get(f"{pdp.base}/console/decisions/") as r:
            page = await r.text()
    assert "SELECT id FROM customers WHERE ssn LIKE [masked]" in page
    assert "123-45-6789" not in page
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor,pii-readers")
        async with http.get(f"{pdp.base}/console/decisions/") as r:
            assert "123-45-6789" in await r.text()
