"""Probing the MCP exchange's masks (brief P11, helper mcpmask2): a field named where
the masks did not look, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy. The
reader is outside pii-readers: tool results are masked (the field `phone`; a phone
number is no detector's). Each came back whole before its fix:

- an object naming its field in an object of labels beside the value (`{"field":
  {"name": "phone"}, "value": ...}`, `{"meta": {"type": "phone"}}` two levels down): only
  a string member named it (mcp._pair_name now takes an object of labels alone under
  keys naming a role, bodies.labelled_field, outside a result's own members);
- a value keyed by itself whose label is two levels down (`{"+1 555 0100": {"meta":
  {"type": "phone"}}}`): bodies.BodyMask.value_key_field read one level;
- a text content naming the field as its reader reads it but the masks did not:
  `ph\u0307one: ...` (a combining mark), `P-H-O-N-E: ...`, `p h o n e: ...`,
  `PHONE\uff1a...` (a fullwidth colon: the text was taken for one word, no separator);
  now read as bodies.as_read gives it too;
- base64 whose bytes are no UTF-8 (Latin-1 text holding `phone: ...`): only the
  detectors read it as Latin-1; the field rules now read it too, and it is withheld.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from test_mcp_probe_p10 import every_answer_shown

pytestmark = pytest.mark.integration

PHONE = "+1 555 0100"
LATIN1 = base64.b64encode("Téléphone de Zoé, phone: +1 555 0100".encode("latin-1")).decode()
ANSWERS: dict[str, Any] = {
    "label one level down": {"field": {"name": "phone"}, "value": PHONE},
    "label two levels down": {"attr": {"meta": {"type": "Phone number"}}, "data": PHONE},
    "keyed by itself, label two levels down": {PHONE: {"meta": {"type": "phone"}}},
    "an array of such": {"items": [{"field": {"label": "PHONE"}, "v": PHONE}]},
    "latin-1 base64": {"attachment": LATIN1},
    "a label listed": {"field": ["phone"], "value": PHONE},
    "a marked label": {"field": {"name": "ph\u0307one"}, "value": PHONE},
    "a pair named with a mark": {"name": "P-H-O-N-E", "value": PHONE},
    "a key with a combining mark": {"customer": {"ph\u0307one": PHONE}},
    "a key spelt out": {"customer": {"p h o n e": PHONE}},
}
TEXTS = {
    "combining mark": f"ph\u0307one: {PHONE}",
    "spelt with hyphens": f"P-H-O-N-E: {PHONE}",
    "spelt with spaces": f"p h o n e: {PHONE}",
    "fullwidth colon": "PHONE\uff1a5550100",
    "latin-1 base64 alone": LATIN1,
}


async def test_a_field_named_where_the_masks_did_not_look_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = await every_answer_shown(tmp_path, monkeypatch, ANSWERS, TEXTS)
    leaked = {
        name: text[:300]
        for name, text in shown.items()
        if "555 0100" in text or "5550100" in text or LATIN1 in text
    }
    assert not leaked, leaked
