"""The HTTP request codec and target normalisation, without sockets: transcripts (bytes in →
events out, or the 400 they earn) and Hypothesis over raw bytes.

Properties tried: a request is read one way only (CL/TE conflicts, duplicates, obs-fold,
bare LF, bad chunk sizes are refused, not guessed); split anywhere, the same bytes give the
same events; nothing but BadRequest ever escapes the reader; the normalised target is a
fixed point, free of dot-segments and double slashes, and never carries an encoded slash.
"""

# ruff: noqa: E501  (transcripts read best one request per line)
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portcullis.http_target import TargetRefused, normalise
from proxies.http.codec import BadRequest, Body, End, Head, RequestReader

GET = b"GET /v1/x HTTP/1.1\r\nHost: api\r\n\r\n"


def events(data: bytes) -> list[object]:
    reader = RequestReader()
    out = reader.feed(data)
    while out and isinstance(out[-1], End):
        more = reader.next_request()
        if not more:
            break
        out += more
    return out


def refused(data: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as err:
        events(data)
    return err.value


def test_a_simple_request_transcript():
    (head, end) = events(GET)
    assert isinstance(head, Head) and isinstance(end, End)
    assert (head.method, head.target, head.version, head.host) == (
        "GET",
        "/v1/x",
        "HTTP/1.1",
        "api",
    )
    assert head.request_line == "GET /v1/x HTTP/1.1"


def test_content_length_body_and_pipelined_next_request():
    data = b"POST /a HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nhello" + GET
    got = events(data)
    assert [type(e).__name__ for e in got] == ["Head", "Body", "End", "Head", "End"]
    assert isinstance(got[1], Body) and got[1].data == b"hello"


def test_chunked_body_with_extension_and_trailer():
    data = (
        b"POST /a HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    )
    got = events(data)
    assert b"".join(e.data for e in got if isinstance(e, Body)) == b"hello world"
    assert isinstance(got[-1], End)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
        ),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
        (
            b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
            400,
        ),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        (b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\nHost: a\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain, a/json\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\n\r\n", 400),
        (b"get /a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G@T /a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET  /a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
        (b"GET http://evil.example/x HTTP/1.1\r\nHost: api\r\n\r\n", 400),
        (b"GET http://api@evil.example/x HTTP/1.1\r\nHost: api@evil.example\r\n\r\n", 400),
        (b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400),
        (
            b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
            400,
        ),
        (b"GET /a HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 40000 + b"\r\n\r\n", 431),
        (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n", 413),
    ],
)
def test_ambiguous_requests_are_refused(data, status):
    assert refused(data).status == status


def test_absolute_form_for_this_host_is_reduced_to_origin_form():
    (head, _) = events(b"GET http://api:80/v1/x?q=1 HTTP/1.1\r\nHost: api:80\r\n\r\n")
    assert isinstance(head, Head) and head.target == "/v1/x?q=1"


def test_an_oversized_head_is_refused_before_its_end_arrives():
    with pytest.raises(BadRequest):
        RequestReader().feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 40000)


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\nHost: a\n\n", b"GET / HTTP/1.1\r\nHost: a\n\n", b"GET / HTTP/1.1\n"],
)
def test_a_head_with_bare_lf_is_refused_before_it_ends(data):
    """Never waiting for a CRLF CRLF that a bare-LF client will not send."""
    with pytest.raises(BadRequest) as refused:
        RequestReader().feed(data)
    assert refused.value.status == 400


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_raw_bytes_either_read_or_refused(data):
    try:
        got = events(data)
    except BadRequest as exc:
        assert exc.status in (400, 405, 413, 417, 431, 505)
        return
    for event in got:
        assert isinstance(event, Head | Body | End)


_REQUEST_LIST = [
    GET,
    b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
]
_REQUESTS = st.sampled_from(_REQUEST_LIST)


@settings(max_examples=200, deadline=None)
@given(st.lists(_REQUESTS, min_size=1, max_size=4), st.data())
def test_split_anywhere_the_same_events(requests, data):
    whole = b"".join(requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=6)))
    reader = RequestReader()
    got: list[object] = []
    last = 0
    for cut in [*cuts, len(whole)]:
        got += reader.feed(whole[last:cut])
        last = cut
        while got and isinstance(got[-1], End):
            more = reader.next_request()
            if not more:
                break
            got += more
    heads = [e for e in got if isinstance(e, Head)]
    bodies = b"".join(e.data for e in got if isinstance(e, Body))
    assert len(heads) == len(requests)
    body_of = {0: b"", 1: b"hello", 2: b"abc"}
    assert bodies == b"".join(body_of[_REQUEST_LIST.index(r)] for r in requests)
    assert sum(isinstance(e, End) for e in got) == len(requests)


_HEADS = st.lists(
    st.sampled_from(
        [
            b"GET /v1/x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer a\r\n\r\n",
            b"GET /v1/x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer b\r\n\r\n",
            b"GET /v1/x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer a\r\nConnection: close\r\n\r\n",
            b"GET /v1/y HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer a\r\n\r\n",
            b"GET /v1/x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer a\r\nContent-Length: 1\r\n\r\nz",
            b"GET /v1/x HTTP/1.1\r\nHost: api\r\nHost: api\r\n\r\n",
            b"GET /v1/x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer a\nX: y\r\n\r\n",
        ]
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(_HEADS)
def test_a_reader_that_read_earlier_requests_reads_the_next_as_a_new_reader_does(requests):
    """The reader keeps the last head it read by its bytes (a client repeats its requests):
    whatever came before, each request reads exactly as on a connection of its own — the
    same head, the same body, or the same refusal."""
    kept = RequestReader()
    for request in requests:
        try:
            alone: object = events(request)
        except BadRequest as exc:
            alone = ("refused", exc.status, exc.reason)
        try:
            got: object = kept.feed(request)
            while got and isinstance(got[-1], End):  # type: ignore[index]
                more = kept.next_request()
                if not more:
                    break
                got += more  # type: ignore[operator]
        except BadRequest as exc:
            got = ("refused", exc.status, exc.reason)
            kept = RequestReader()  # a refused request ends its connection
        assert got == alone


def test_the_same_head_bytes_give_the_same_head_object_and_others_a_new_one():
    reader = RequestReader()
    first = reader.feed(GET)[0]
    reader.next_request()
    again = reader.feed(GET)[0]
    reader.next_request()
    other = reader.feed(GET.replace(b"/v1/x", b"/v1/y"))[0]
    assert again is first and other is not first and isinstance(other, Head)
    assert other.target == "/v1/y"


# -- target normalisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/a/%2e%2e/admin", "/admin", ""),
        ("/a/%2E%2E/admin", "/admin", ""),
        ("/a/./b/../c", "/a/c", ""),
        ("//admin///x", "/admin/x", ""),
        ("/a/..", "/", ""),
        ("/../../etc", "/etc", ""),
        ("/%7euser/%41", "/~user/A", ""),
        ("/a%20b", "/a%20b", ""),
        ("/a%c3%a9", "/a%C3%A9", ""),
        ("/100%25", "/100%25", ""),
        ("/a%25zz", "/a%25zz", ""),
        ("/x?a=1&a=2&b=%2F", "/x", "a=1&a=2&b=%2F"),
    ],
)
def test_targets_normalise(target, path, query):
    got = normalise(target)
    assert (got.path, got.query) == (path, query)


@pytest.mark.parametrize(
    "target",
    ["/a%2fb", "/a%2Fb", "/a%5cb", "/a%00", "/a%zz", "/a%2", "/a#frag", "/a/..;/b", "/a\\b",
     "/a b", "x/y", "/a?q=%g1", "/admin;x", "/ad;x/min", "/a;/../admin", "/a/.;/b",
     "/a/%252e%252e/admin", "/a/%252E%252e/admin", "/a/%c0%ae%c0%ae/admin", "/%e0%80%ae",
     "/a%ff", "/a%c3"],
)  # fmt: skip
def test_targets_that_could_be_read_two_ways_are_refused(target):
    with pytest.raises(TargetRefused):
        normalise(target)


def test_query_parameters_keep_every_value():
    assert normalise("/x?a=1&a=2&b=%41+c").query_params() == {"a": ["1", "2"], "b": "A c"}


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="/.%2eEfF5cC0aA~-_;?=&", max_size=40))
def test_normal_form_is_a_fixed_point_without_dot_segments(tail):
    try:
        got = normalise("/" + tail)
    except TargetRefused:
        return
    assert normalise(got.forward) == got
    segments = got.path.split("/")
    assert "." not in segments and ".." not in segments
    assert "//" not in got.path
    assert "%2F" not in got.path.upper() and "%2E" not in got.path.upper()


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        (b"Connection: keep-alive\r\n", True),
        (b"Connection: keep-alive, close\r\n", False),
        (b"Connection: keep-alive\r\nConnection: close\r\n", False),
        (b"", False),
    ],
)
def test_an_http_1_0_request_naming_close_is_not_kept(fields: bytes, kept: bool) -> None:
    # RFC 9112 §9.3: `close` ends the connection first; keep-alive only keeps an
    # HTTP/1.0 one that names no close (it was kept when it named both)
    head = next(e for e in events(b"GET /a HTTP/1.0\r\nHost: x\r\n" + fields + b"\r\n"))
    assert isinstance(head, Head) and head.keep_alive is kept
