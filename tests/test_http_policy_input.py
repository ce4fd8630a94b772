"""What the policy sees of an HTTP request is re-derived by the PDP from the request line it
records, not taken from the proxy's say: a proxy (or anyone holding a proxy credential)
that describes `GET /a/%2e%2e/admin` as `/public` is decided on `/admin`; a request line
that does not normalise is decided with no path, which no rule allows."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from pdp_harness import pdp_config, pdp_stub, running_pdp, token

from pdp.domain.policy_input import http_command
from portcullis.v1 import pdp_pb2

pytestmark = pytest.mark.integration


def test_the_builder_reads_the_request_line():
    got = http_command(
        "http.request",
        'POST /a/%2e%2e/admin?x=1&x=2 HTTP/1.1\nbody: 9 bytes sha256:00\n\n{"n": 12}',
        {
            "method": "GET",
            "path": "/public",
            "query": {},
            "headers": {"content-type": "application/json"},
            "body": {"n": 1},
        },
    )
    assert got["method"] == "POST" and got["path"] == "/admin"
    assert got["query"] == {"x": ["1", "2"]} and got["body"] == {"n": 12}
    refused = http_command("http.request", "GET /a%2fb HTTP/1.1", {"path": "/public"})
    assert "path" not in refused


@pytest.mark.parametrize(
    "body",
    [
        '{"_method": "DELETE", "_method": "GET"}',
        '{"a": {"role": "admin", "\\u0072ole": "reader"}}',
        '\ufeff{"_method": "DELETE"}',
        "[" * 5000,
        "not json",
        '{"amount": 1e400}',
        '{"amount": NaN}',
        '{"id": 9007199254740993}',
    ],
    ids=["duplicate", "escaped-duplicate", "bom", "deep", "not-json", "inf", "nan", "2**53+1"],
)
def test_a_json_body_read_more_than_one_way_leaves_no_path(body):
    """The last of two values is not what a first-wins upstream acts on; the policy is
    shown no path (no rule allows), not one of the readings."""
    got = http_command(
        "http.request",
        f"GET /echo HTTP/1.1\nbody: 9 bytes sha256:00\n\n{body}",
        {"headers": {"content-type": "application/json; charset=utf-8"}, "body": {"n": 1}},
    )
    assert "path" not in got and "body" not in got and got["method"] == "GET"


async def test_a_proxys_path_is_not_trusted(tmp_path):
    connection = {
        "name": "billing-api",
        "type": "http",
        "listen": "127.0.0.1:1",
        "upstream": "http://127.0.0.1:2",
        "credentials": {"provider": "static", "header": "X", "value": "v"},
    }
    config = pdp_config(tmp_path, connections=[connection])
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await stub.OpenSession(
            pdp_pb2.OpenSessionRequest(
                token=token(config),
                connection=pdp_pb2.Connection(name="billing-api", type="http"),
                client_addr="127.0.0.1:1",
                client="pytest",
            )
        )

        async def decide(raw: str) -> pdp_pb2.Decision:
            attributes = struct_pb2.Struct()
            attributes.update({"method": "GET", "path": "/public", "query": {}, "headers": {}})
            response = await stub.Decide(
                pdp_pb2.DecideRequest(
                    session_id=opened.session_id,
                    command=pdp_pb2.Command(kind="http.request", raw=raw, attributes=attributes),
                )
            )
            return response.decision

        lied = await decide("DELETE /a/%2e%2e/admin HTTP/1.1")
        read = await decide("GET /a/%2e%2e/admin HTTP/1.1")
        unreadable = await decide("GET /a%2fb HTTP/1.1")
    assert lied.verdict == pdp_pb2.DENY and list(lied.reasons) == ["DELETE is reserved to dba"]
    assert "GET /admin is a read" in read.reasons
    assert unreadable.verdict == pdp_pb2.DENY
