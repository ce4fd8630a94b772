"""Probing the HTTP proxy's masks (P26): TSV bodies, rows under a first row of data read
as names, and lines of JSON typed as one document (Elasticsearch).

Real PDP with the shipped policy, the HTTP proxy, a raw upstream answering each path with
the body the case names, raw clients: a reader outside pii-readers (`phone`,
`password`, `ssn` masked by name; the detectors).

- A TSV answer (`text/tab-separated-values`) was read as lines of text: rows nothing
  names (`Ann<TAB>5550100`) went whole where the same CSV was masked, and a header
  naming a masked column (`id<TAB>phone`) was refused (502) where CSV's was masked. TSV
  is now read as CSV is, its cells parted at tabs (a cell quoted across a tab: 502).
- JSON rows (and CSV) whose first row holds no digit were read as a row of names over
  the rest, which then went unmasked: a first customer whose phone is empty
  (`[["Ann", ""], ["Bob", "5550100"]]`, `SELECT *` ordered by name) handed every other
  row's phone and bare SSN over. A row with an empty cell, a placeholder (`n/a`,
  `none`) or a name twice is no row of names now.
- Lines of JSON typed `application/json` (Elasticsearch's NDJSON under that type) were
  a 502 for a masked reader ("does not parse"); they are masked line by line as
  `application/x-ndjson` is. A line that does not read one way only is still a 502.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from http_upstream import exchange, http_stack, read_cases, status
from pdp_harness import token

pytestmark = pytest.mark.integration

TSV = "text/tab-separated-values"
HIDDEN = ("5550100", "5550101", "hunter2", "078051120")

# path: (Content-Type, body); each must come back without HIDDEN, as 200 unless named 502
LEAKED_BEFORE = {
    "tsv-nameless": (TSV, "Ann\t5550100\nBob\t5550101\n"),
    "tsv-nameless-ids": (TSV, "7\tAnn\t5550100\n8\tBob\thunter2x1\n"),
    "json-rows-empty-first": (
        "application/json",
        json.dumps([["Ann", ""], ["Bob", "5550100"], ["Cy", "078051120"]]),
    ),
    "json-rows-placeholder-first": (
        "application/json",
        json.dumps({"rows": [["Ann", "n/a"], ["Bob", "5550101"]]}),
    ),
    "csv-empty-first": ("text/csv", "Ann,,x\nBob,5550100,078051120\n"),
}
REFUSED_BEFORE = {
    "tsv-header": (TSV, "id\tphone\n7\t5550100\n"),
    "tsv-header-words": (TSV + "; charset=utf-8", "id\tname\tPassword\n7\tAnn\thunter2\n"),
    "ndjson-as-json": (
        "application/json",
        '{"index":{"_id":"1"}}\n{"name":"Ann","phone":"5550100"}\n',
    ),
    "ndjson-columns-as-json": ("application/json", '["id","phone"]\n[7,"5550100"]\n'),
}
STILL_REFUSED = {
    "tsv-quoted-tab": (TSV, 'id\tnote\tphone\n7\t"a\tb"\t5550100\n'),
    "ndjson-repeated-name": ("application/json", '{"a":1}\n{"phone":"x","phone":"5550100"}\n'),
    "ndjson-a-line-not-json": ("application/json", '{"a":1}\nphone 5550100\n'),
}
KEPT = {
    "tsv-names": (TSV, "id\tname\n7\tAnn\n"),
    "json-rows-names": ("application/json", '[["id","name"],[7,"ann"]]'),
    "csv-pandas-index": ("text/csv", ",name,city\n0,Ann,Paris\n"),
    # (a first line of words naming no masked column is names only when the type says
    # so, P27: else it may be a row, and the rows under it are read as rows nothing names)
    "csv-a-column-named-no": ("text/csv; header=present", "No,Order\n1,ORD-2024-0001\n"),
    "ndjson-as-json-clean": ("application/json", '{"took":1}\n{"took":2,"errors":false}\n'),
}
CASES = {**LEAKED_BEFORE, **REFUSED_BEFORE, **STILL_REFUSED, **KEPT}


async def _read_all(
    tmp_path: Any, cases: dict[str, tuple[str, str]] = CASES
) -> dict[str, tuple[int, bytes]]:
    return await read_cases(tmp_path, cases)


async def test_tsv_rows_and_lines_of_json_are_masked_not_passed_nor_refused(tmp_path: Any) -> None:
    got = await _read_all(tmp_path)
    leaked = {p: body for p, (_, body) in got.items() if any(h.encode() in body for h in HIDDEN)}
    assert leaked == {}, leaked
    codes = {p: code for p, (code, _) in got.items()}
    expected = {p: 502 if p in STILL_REFUSED else 200 for p in CASES}
    assert codes == expected
    # masked where the value was, the rest as it came
    assert got["tsv-header"][1] == b"id\tphone\n7\t[REDACTED]\n"
    assert got["tsv-nameless"][1] == b"Ann\t[REDACTED]\nBob\t[REDACTED]\n"
    assert got["tsv-header-words"][1] == b"id\tname\tPassword\n7\tAnn\t[REDACTED]\n"
    assert got["ndjson-as-json"][1] == (
        b'{"index":{"_id":"1"}}\n{"name":"Ann","phone":"[REDACTED]"}\n'
    )
    assert got["ndjson-columns-as-json"][1] == b'["id","phone"]\n[7,"[REDACTED]"]\n'
    for path in KEPT:
        assert got[path][1] == CASES[path][1].encode(), path


BULK = b'{"index":{"_index":"logs","_id":"1"}}\n{"msg":"hello"}\n'


def _request(stack: Any, who: str, line: str, kind: str, body: bytes) -> bytes:
    groups = ("dba",) if who.startswith("dba") else ("readonly",)
    bearer = token(stack.config, f"{who}@example.com", groups)
    return (
        f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bearer}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def test_a_bulk_request_of_json_lines_is_read_not_refused(tmp_path: Any) -> None:
    """Elasticsearch's _bulk (typed application/json or x-ndjson) was a 400 for everyone
    ("a body typed as JSON that is not JSON"); its lines are read now, each one way only:
    a dba's goes, a reader's carrying an index action is that PUT (not a read), and a
    line naming a member twice is still a 400."""
    async with http_stack(tmp_path) as s:
        cases = {
            "dba0 json": ("dba0", "POST /echo/_bulk", "application/json", BULK),
            "dba1 ndjson": ("dba1", "POST /echo/_bulk", "application/x-ndjson", BULK),
            "reader GET bulk": ("reader0", "GET /echo/_bulk", "application/json", BULK),
            "dba2 repeated": (
                "dba2",
                "POST /echo/_bulk",
                "application/json",
                b'{"index":{}}\n{"a":1,"a":2}\n',
            ),
        }
        got = {}
        for name, (who, line, kind, body) in cases.items():
            answer = await exchange(s.proxy.port, _request(s, who, line, kind, body))
            got[name] = (status(answer), answer.partition(b"\r\n\r\n")[2])
        reached = [seen["body"] for seen in s.upstream.seen]
    assert got["dba0 json"][0] == 200 and got["dba1 ndjson"][0] == 200, got
    assert json.loads(got["dba0 json"][1])["body"] == BULK.decode()
    assert got["reader GET bulk"][0] in (202, 403), got["reader GET bulk"]
    assert got["dba2 repeated"][0] == 400, got["dba2 repeated"]
    assert reached == [BULK, BULK]


LISTS = {
    "list-of-strings": ("application/json", json.dumps(["Ann", "5550100"])),
    "list-of-strings-spaced": ("application/json", json.dumps(["Ann", "+1 555 0101", "Bob"])),
}
NAMES = ["v1.2.3", "bucket_2024", "order-17", "2024-01-05", "6b1e8a1c-54a4-4f7e-9a8b-0d4c2c1f0a11"]


async def test_a_list_of_strings_holding_a_value_is_masked(tmp_path: Any) -> None:
    """A document that is a list of strings (`["Ann", "5550100"]`: one row of strings)
    went whole: a row was masked only with numbers beside strings. A string reading as a
    value (seven digits or more, more digits than letters) is masked; names, tags, dates
    and UUIDs stay."""
    names = ("application/json", json.dumps(NAMES, separators=(",", ":")))
    got = await _read_all(tmp_path, {**LISTS, "list-of-names": names})
    for path in LISTS:
        code, body = got[path]
        assert code == 200 and b"555" not in body and b"Ann" in body, (path, body)
    assert got["list-of-names"] == (200, json.dumps(NAMES, separators=(",", ":")).encode())


ASTRAY = {
    "csv-row-wider": ("text/csv", "id,phone\n7,Ann,5550100\n"),
    "tsv-row-wider": (TSV, "id\tphone\n7\t5550100\textra\t5550101\n"),
    "csv-unmasked-header-wider": ("text/csv", "id,note\n7,5550100,x\n"),
}


async def test_a_row_wider_than_its_header_is_masked_as_unnamed(tmp_path: Any) -> None:
    """A CSV or TSV row with more cells than its header names: the cells past the
    header's went whole, and pandas reads such a row's first cell as the index and the
    rest one column to the left (`7,Ann,5550100` under `id,phone`: phone 5550100), where
    the mask had masked `Ann`. A row of another width is masked as rows nothing names."""
    got = await _read_all(tmp_path, ASTRAY)
    for path, (code, body) in got.items():
        assert code == 200 and b"555" not in body and b"7" in body, (path, body)


async def test_a_method_named_in_an_object_of_a_list_body_is_no_read(tmp_path: Any) -> None:
    """A reader's GET whose JSON body is a list (a batch, or lines of JSON) with an object
    naming `_method` went upstream as a read: the policy reads a method's field in an
    object body only. It now counts as a body naming a method (no read)."""
    bodies = {
        "array": b'[{"_method":"DELETE"}]',
        "lines": b'{"q":1}\n{"_method":"DELETE"}\n',
        "lines override": b'{"q":1}\n{"X-HTTP-Method-Override":"DELETE"}\n',
    }
    async with http_stack(tmp_path) as s:
        got = {}
        for n, (name, body) in enumerate(bodies.items()):
            request = _request(s, f"reader{n}", "GET /echo/x", "application/json", body)
            got[name] = status(await exchange(s.proxy.port, request))
        reached = len(s.upstream.seen)
    assert all(code in (202, 403) for code in got.values()), got
    assert reached == 0


async def test_a_readers_msearch_of_json_lines_is_a_read(tmp_path: Any) -> None:
    """With the PDP reading lines of JSON as the proxy does (pdp/domain/policy_input.py
    _json_lines), a reader's GET _msearch is a read; a line naming a masked field still
    needs approval."""
    msearch = b'{"index":"logs"}\n{"query":{"match_all":{}}}\n'
    named = b'{"index":"logs"}\n{"query":{"wildcard":{"phone":"555*"}}}\n'
    async with http_stack(tmp_path) as s:
        got = {}
        for n, (kind, body) in enumerate(
            [
                ("application/json", msearch),
                ("application/x-ndjson", msearch),
                ("application/json", named),
            ]
        ):
            line = "GET /echo/logs/_msearch"
            answer = await exchange(s.proxy.port, _request(s, f"reader{n}", line, kind, body))
            got[n] = status(answer)
    assert got == {0: 200, 1: 200, 2: 202}, got
