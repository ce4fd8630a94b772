"""Masking probe, part 7: values written so that their reader sees them and the detectors did not.

Each went out as it came (the detectors read the text as written, not as its reader shows
it): a value percent-escaped (`%34%31...`, `078%2D05%2D1120`, `%2B1%20415...`), written
with JSON string escapes (`\\u0034\\u0031...`, `4111\\u00a01111...`), split by an inline
tag or a comment (`ann<span>@</span>example.com`, `078-<i>05</i>-1120`,
`+1 <b>415</b> 555 2671`), a telephone number or a password's separator a no-break or
thin space (`+1\\u00a0415\\u00a0555\\u00a02671`, `password:\\u00a0hunter2`), a password's
key escaped (`pass\\u0077ord`, `pass%77ord`). The detectors now read a text also as its
reader shows it (escapes read, inline tags and comments as nothing, other tags as a space,
spaces and dashes of any width as ASCII), and mask what they find there at its place in
the text. (An SSN's two separators mixed, `123-45 6789`, stays a near miss unless
labelled, as masking probe 1 decided; base64 is no writing a reader sees through: left.)

Real components: sshd and the SSH proxy (a reader's `cat` of an HTML page), a PDP on the
shipped policy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ssh_proxy import ssh_policy, ssh_stack

from portcullis.masking import DETECTORS, Masker
from portcullis.verdict import MaskRule


def masker() -> Masker:
    return Masker([MaskRule(detector=d, strategy="partial") for d in DETECTORS], b"k" * 32)


# (text, what of it must not come out, the detector that finds it)
WRITTEN_OTHERWISE = [
    ("%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31", "%31%31%31%31%31", "credit_card"),
    ("\\u0034\\u0031\\u0031\\u0031111111111111", "111111111111", "credit_card"),
    ('"4111\\u00a01111\\u00a01111\\u00a01111"', "4111\\u00a01111", "credit_card"),
    ("<td>4111</td><td>1111</td><td>1111</td><td>1111</td>", "<td>4111</td>", "credit_card"),
    ("4111 <!-- x -->1111 1111 1111", "-->1111 1111", "credit_card"),
    ("ann<span>@</span>example.com", "ann<span>", "email"),
    ("078-<i>05</i>-1120", "078-", "ssn"),
    ("078%2D05%2D1120", "078%2D05", "ssn"),
    ("+1 <b>415</b> 555 2671", "555 2671", "phone"),
    ("%2B1%20415%20555%202671", "%20415%20555", "phone"),
    ("+1\u00a0415\u00a0555\u00a02671", "415\u00a0555", "phone"),
    ("(415)\u2009555\u20132671", "555\u20132671", "phone"),
    ("password:\u00a0hunter2", "hunter2", "token"),
    ('{"pass\\u0077ord": "hunter2"}', "hunter2", "token"),
    ("user=ann&pass%77ord=hunter2", "hunter2", "token"),
    ("<b>password</b>: hunter2", "hunter2", "token"),
]
# no value here, whichever way it is written
PLAIN = [
    "order 20231107-0042 at 2023-11-07T10:00:00Z",
    "id 550e8400-e29b-41d4-a716-446655440000",
    "<p>Total: 1,234.56 USD</p><br/>2023-11-07 12:30:45",
    "<tr><td>2023</td><td>11</td><td>07</td></tr>",
    "https://x.org/a%20b?q=%31%32%33&page=2",
    '{"ts": "2023\\u00a011\\u00a007"}',
    "build 100.12-3456",
    "v1.2.3-45 6789",
]


@pytest.mark.parametrize(("text", "value", "detector"), WRITTEN_OTHERWISE)
def test_a_value_as_its_reader_shows_it_is_masked(text: str, value: str, detector: str) -> None:
    masked, counts = masker().mask_text(text)
    assert value not in masked, masked
    assert counts[detector] >= 1, counts
    again, found = masker().mask_text(masked)
    assert again == masked and not found, again


@pytest.mark.parametrize(("text", "value", "detector"), WRITTEN_OTHERWISE)
def test_the_bytes_gate_lets_each_through(text: str, value: str, detector: str) -> None:
    """Masker.may_detect passes the ASCII ones (`%34%31...`, `pass%77ord=x`) to mask_text."""
    data = text.encode()
    assert masker().may_detect(data), text


@pytest.mark.parametrize("text", PLAIN)
def test_dates_ids_and_amounts_stay_as_they_are(text: str) -> None:
    assert masker().mask_text(text)[0] == text


@pytest.mark.integration
async def test_a_readers_cat_of_a_page_shows_no_value_written_otherwise(tmp_path: Path) -> None:
    """A reader outside pii-readers cats an HTML page through the SSH proxy (asyncssh
    client, sshd upstream): its card, address, telephone number and password, each written
    otherwise, come masked; its date and order number as they are."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.html").write_text(
        "<p>card %34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31</p>\n"
        "<p>mail ann<span>@</span>example.com</p>\n"
        "<p>tel +1\u00a0415\u00a0555\u00a02671</p>\n"
        "<p>password:\u00a0hunter2</p>\n<p>order 20231107-0042 on 2023-11-07</p>\n"
    )
    policy = str(ssh_policy(tmp_path, f"cat {www}/*"))
    async with ssh_stack(tmp_path, extra={"policies": policy}) as s:  # noqa: SIM117
        async with await s.connect(("readonly",)) as conn:
            result = await conn.run(f"cat {www}/page.html")
    out = str(result.stdout)
    assert result.exit_status == 0, result
    for value in ("%31%31%31%31%31%31", "ann<span>", "415\u00a0555", "hunter2"):
        assert value not in out, out
    assert "<p>order 20231107-0042 on 2023-11-07</p>" in out, out
