"""Probe P4 of the value detectors (helper pgmask7): HTML character references.

A card number or an SSN written with HTML character references (`&#52;&#49;&#49;&#49;
...`, `&#x34;...`, `SSN &#48;&#55;&#56;-&#48;&#53;-...`, groups parted by `&nbsp;`) is the
number to whoever opens the page or mail it lands in, but the detectors read the
references' own digits: the value went out whole, in a Postgres text column, an SSH
command's output and an HTTP body alike (only an escaped @ was read, fd5af4c). A value
holding a reference is now also read as a browser shows it (portcullis.masking
_referenced: numeric references, and the names a number or an address is written with),
the spans found mapped back onto the references; may_detect lets such a value through.

Digits written raised, lowered or circled (`⁴¹¹¹ ¹¹¹¹ ...`, `SSN ₀₇₈-₀₅-₁₁₂₀`, `④①①①`) are
read as digits too (they were read only as decimal digits of any script), and partial
stars them as it stars any digit; a mark drawn over a digit (`4\u0301111 ...`, a keycap's
`4\ufe0f\u20e3`) is read past as an invisible character is.
"""

from __future__ import annotations

import pytest
from adversary import assert_none_of, ready_client, running_arena

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

DETECTORS = ("email", "credit_card", "ssn", "phone", "token")
MASKER = Masker([MaskRule(detector=d, strategy="redact") for d in DETECTORS], b"k" * 32)
PARTIAL = Masker([MaskRule(detector=d, strategy="partial") for d in DETECTORS], b"k" * 32)


def referenced(text: str, form: str = "&#{};") -> str:
    """`text` with each digit written as an HTML reference (`form` of its code)."""
    return "".join(form.format(ord(c)) if c.isdigit() else c for c in text)


def hexa(text: str) -> str:
    return "".join(f"&#x{ord(c):x};" if c.isdigit() else c for c in text)


CARD = "4111 1111 1111 1111"
SSN = "078-05-1120"

# each came back whole before
WRITTEN = [
    referenced(f"card {CARD} on file"),
    referenced("4111111111111111"),
    hexa(CARD),
    referenced(CARD, "&#{}"),  # no semicolon: a browser reads it so too
    referenced(CARD, "&#000{};"),
    "card &#52;111 1111 1111 1111",
    "4111&nbsp;1111&nbsp;1111&nbsp;1111",
    "4111&#32;1111&#x20;1111&ndash;1111",
    referenced(f"SSN {SSN}"),
    referenced(SSN),
    f"SSN: {hexa(SSN)}",
    "SSN 078&#45;05&#45;1120",
    "&#52;&#49;\u200b&#49;&#49; 1111 1111 1111",  # with an invisible character too
]


@pytest.mark.parametrize("value", WRITTEN)
def test_a_number_written_with_html_references_is_masked(value: str) -> None:
    assert MASKER.may_detect(value.encode())
    masked, counts = MASKER.mask_text(value)
    assert counts, masked
    assert "REDACTED" in masked
    for digits in ("&#49;&#49;&#49;&#49;", "&#x31;&#x31;&#x31;&#x31;", "1111 1111", "1120"):
        assert digits not in masked, masked


def test_partial_keeps_no_more_than_the_references_it_ends_with() -> None:
    masked, _ = PARTIAL.mask_text(referenced(CARD))
    assert masked.count("&#49;") <= 4 and "&#52;" not in masked, masked


# what stays as it is
KEPT = [
    "AT&T &amp; co, 12 items",
    "&#169; 2024 &mdash; all rights reserved",
    "Tom &amp; Jerry &lt;3",
    "&#52111 1111 1111 1111",  # one reference, U+CB8F: not a digit
    "order &#35;4411",
]


@pytest.mark.parametrize("value", KEPT)
def test_ordinary_references_are_left_alone(value: str) -> None:
    masked, counts = MASKER.mask_text(value)
    assert not counts and masked == value


# --- through the Postgres proxy ----------------------------------------------------------

NOTES = f"""
CREATE TABLE p4_notes (id int, note text);
INSERT INTO p4_notes VALUES
  (1, '{referenced(f"card {CARD} on file")}'),
  (2, '{hexa(f"SSN {SSN}")}'),
  (3, '4111&nbsp;1111&nbsp;1111&nbsp;1111');
"""
LEAKS = (
    referenced("4111").encode(),
    hexa("078-05").encode(),
    b"4111&nbsp;",
    referenced("1111").encode(),
    hexa("1111").encode(),
    b"1111&nbsp;1111",
    hexa("1120").encode(),
)


@pytest.mark.integration
def test_a_note_written_with_references_is_masked_through_the_proxy(tmp_path) -> None:
    with running_arena(tmp_path) as arena:
        with arena.admin() as admin:
            admin.execute(NOTES)
        c = ready_client(arena, ("readonly",), "masking-p4")
        try:
            for sql in (
                "SELECT id, note FROM p4_notes ORDER BY id",
                "COPY p4_notes TO STDOUT",
                "COPY (SELECT note FROM p4_notes) TO STDOUT (FORMAT csv)",
            ):
                answer = c.query(sql)
                assert not answer.errors, answer.errors
                assert b"&nbsp;1111" in answer.raw, answer.messages  # (partial: the last 4)
                assert_none_of(answer, LEAKS)
        finally:
            c.close()


# --- digits in other forms ---------------------------------------------------------------

RAISED = "".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(c)] if c.isdigit() else c for c in CARD)
CIRCLED = "".join("⓪①②③④⑤⑥⑦⑧⑨"[int(c)] if c.isdigit() else c for c in CARD)
LOWERED_SSN = "SSN " + "".join("₀₁₂₃₄₅₆₇₈₉"[int(c)] if c.isdigit() else c for c in SSN)
KEYCAPS = "".join(c + "\ufe0f\u20e3" if c.isdigit() else c for c in CARD)
MARKED = "4\u0301111 1111 1111 1111"


@pytest.mark.parametrize("value", [RAISED, CIRCLED, LOWERED_SSN, KEYCAPS, MARKED])
def test_a_number_in_other_digits_is_masked(value: str) -> None:
    for masker in (MASKER, PARTIAL):
        masked, counts = masker.mask_text(value)
        assert counts, masked
        shown = [c for c in masked if c.isdigit()]
        assert len(shown) <= 4, masked


@pytest.mark.parametrize("value", ["m² of 12 rooms", "café crème 2024", "step ① then ②"])
def test_ordinary_marks_and_raised_digits_stay(value: str) -> None:
    masked, counts = MASKER.mask_text(value)
    assert not counts and masked == value
