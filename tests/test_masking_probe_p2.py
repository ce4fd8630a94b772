"""Values the detectors passed to a masked reader unread (adversary round: a reader's
answer carries a card, an SSN or an address written as a person reads it past a filter):

- card digit groups parted by any one separator that is no letter, digit, comma,
  semicolon or line break (`*`, `:`, `|`, a no-break or thin space ...), one kind
  throughout, or spelt one digit at a time (`4 1 1 1 ...`);
- SSNs parted by dots, slashes and other one-character separators (`078.05.1120`);
- addresses with a fullwidth @ or an ideographic full stop (`ann.smith@example。com`), or
  spelt (`ann (at) example (dot) com`, `ann[at]example[dot]com`,
  `ann at example dot com`).

Each shape is masked by mask_text and let through by the byte gate (Masker.may_detect);
the near misses (lists, times, addresses and ports, prose) stay as they are.
"""

from __future__ import annotations

from collections import Counter

import pytest
from adversary import RawClient
from pg_probe_stack import arena_fixture, reader_fixture

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

KEY = b"k" * 32

arena = arena_fixture()
reader = reader_fixture("mp2")


def everything(strategy: str = "redact") -> Masker:
    return Masker(
        [MaskRule(detector=d, strategy=strategy) for d in ("email", "ssn", "credit_card", "token")],
        KEY,
    )


CARDS = [
    "4111*1111*1111*1111",
    "4111:1111:1111:1111",
    "4111|1111|1111|1111",
    "4111+1111+1111+1111",
    "4111~1111~1111~1111",
    "4111#1111#1111#1111",
    "4111\u00a01111\u00a01111\u00a01111",  # no-break space
    "4111\u20091111\u20091111\u20091111",  # thin space
    "4111\u202f1111\u202f1111\u202f1111",  # narrow no-break space
    "4111\u20141111\u20141111\u20141111",  # em dash
    "4111\u30001111\u30001111\u30001111",  # ideographic space
    "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1",
    "4.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1",
    "4\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01\u00a01"
    "\u00a01\u00a01",
]


@pytest.mark.parametrize("card", CARDS)
def test_a_card_parted_by_any_one_separator_is_masked(card: str) -> None:
    masker = everything()
    masked, counts = masker.mask_text(f"card on file: {card}, thanks")
    assert masked == "card on file: [REDACTED:credit_card], thanks", masked
    assert counts == Counter({"credit_card": 1})
    assert masker.may_detect(card.encode()), card


def test_a_spelt_card_keeps_its_separators_under_partial() -> None:
    masked, _ = everything("partial").mask_text("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1")
    assert masked == "* * * * * * * * * * * * 1 1 1 1"


@pytest.mark.parametrize(
    "text",
    [
        "192.168.100.200:8080",  # an address and its port (mixed separators)
        "2019,2020,2021,2022,2023",  # a list
        "2019;2020;2021;2022;2023",
        "4111\n1111\n1111\n1111",  # a column of numbers
        "1,1,2,3,5,8,1,3,2,1,3,4,5,5,8,9",  # a list of digits (a card's: probe_p3)
        "15 16 17 18 19 20 21",  # a calendar's week
        "2024-01-15 10:30:45.123456",
        "12:34:56:78:90:12:34",
    ],
)
def test_lists_times_and_addresses_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


@pytest.mark.parametrize(
    "ssn",
    [
        "078.05.1120",
        "078/05/1120",
        "078_05_1120",
        "078*05*1120",
        "078:05:1120",
        "078|05|1120",
        "078\u201305\u20131120",
        "078\u00a005\u00a01120",
        "078\t05\t1120",
    ],
)
def test_an_ssn_parted_by_other_separators_is_masked(ssn: str) -> None:
    masker = everything()
    masked, counts = masker.mask_text(f"ssn {ssn}.")
    assert masked == "ssn [REDACTED:ssn].", masked
    assert counts == Counter({"ssn": 1})
    assert masker.may_detect(ssn.encode()), ssn


@pytest.mark.parametrize(
    "text",
    [
        "078,05,1120",  # a list of numbers
        "078.05.1120.5",  # inside a longer number
        "1.078.05.1120",
        "078.05/1120",  # two kinds of separator
        "900.05.1120",  # never issued
    ],
)
def test_ssn_near_misses_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


ADDRESSES = [
    "ann.smith@example\u3002com",  # ideographic full stop
    "ann.smith@example\uff0ecom",  # fullwidth full stop
    "ann\uff20example.com",  # fullwidth @
    "ann (at) example (dot) com",
    "ann ( at ) example ( dot ) com",
    "ann[at]example[dot]com",
    "ann{at}example{dot}com",
    "ann<at>example<dot>com",
    "ann(at)example.com",
    "ann [AT] example.co.uk",
    "ann at example dot com",
    "ann AT example DOT co DOT uk",
    "ann@example dot com",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_an_address_written_otherwise_is_masked(address: str) -> None:
    masker = everything()
    masked, counts = masker.mask_text(f"write to {address} today")
    assert masked == "write to [REDACTED:email] today", masked
    assert counts == Counter({"email": 1})
    assert masker.may_detect(address.encode()) or not address.isascii()


def test_a_short_spelt_address_passes_the_byte_gate() -> None:
    assert everything().may_detect(b"a(at)b.co")
    assert everything().mask_text("a(at)b.co")[0] == "[REDACTED:email]"


def test_a_spelt_address_under_partial_keeps_its_first_letter_and_domain() -> None:
    masked, _ = everything("partial").mask_text("ann (at) example (dot) com")
    assert masked == "a***@example (dot) com"
    masked, _ = everything("partial").mask_text("ann at example dot com")
    assert masked == "a***@example dot com"


@pytest.mark.parametrize(
    "text",
    [
        "look at the dot matrix printer",
        "we met at noon. see example.com",
        "meet at example.com tomorrow",  # an at between spaces needs a spelt dot
        "the data is at rest (at least) in storage",
        "arrive at 10 dot 30",
        "Ann Smith",
        "status: at risk",
    ],
)
def test_prose_with_at_and_dot_stays(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        (
            "card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11"
            " \uff11\uff11\uff11\uff11 ok",  # fullwidth digits
            "card **** **** **** \uff11\uff11\uff11\uff11 ok",
        ),
        (
            "\u0664\u0661\u0661\u0661 " + "\u0661" * 4 + " " + "\u0661" * 4 + " " + "\u0661" * 4,
            "**** **** **** " + "\u0661" * 4,  # Arabic-Indic digits
        ),
        (
            "ssn \uff10\uff17\uff18-\uff10\uff15-\uff11\uff11\uff12\uff10",
            "ssn ***-**-\uff11\uff11\uff12\uff10",
        ),
        ("ssn 078\u200b05\u200b1120", "ssn ***\u200b**\u200b1120"),  # zero-width spaces
        ("ssn 078\u00ad05\u00ad1120", "ssn ***\u00ad**\u00ad1120"),  # soft hyphens
        (
            "mail ann\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
            "mail a***@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
        ),
    ],
)
def test_digits_and_forms_of_other_scripts_are_read(text: str, partial: str) -> None:
    """A Postgres or SSH value reaches mask_text as it came (the HTTP proxy reads a body
    through bodies.as_read first): the detectors read other digits and fullwidth forms as
    ASCII, and partial keeps only the last four digits, whichever their script."""
    masked, counts = everything().mask_text(text)
    assert "[REDACTED:" in masked and sum(counts.values()) == 1, masked
    assert everything("partial").mask_text(text)[0] == partial
    assert everything().may_detect(text.encode())


@pytest.mark.integration
def test_a_reader_through_the_postgres_proxy_sees_them_masked(reader: RawClient) -> None:
    """The real stack: a readonly reader (the shipped detectors, partial) selects each
    shape as a literal through the Postgres proxy; none comes back whole."""
    shapes = [
        ("4111*1111*1111*1111", "1111"),
        ("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "1 1 1 1"),
        ("078.05.1120", "1120"),
        ("078/05/1120", "1120"),
        ("ann.smith@example\u3002com", "example\u3002com"),
        ("ann (at) example (dot) com", "example (dot) com"),
        ("ann at example dot com", "example dot com"),
        ("\uff14\uff11\uff11\uff11 " + " ".join(["\uff11" * 4] * 3), "\uff11" * 4),
    ]
    for shape, kept in shapes:
        answer = reader.query(f"SELECT 'note: {shape}'::text")
        assert not answer.refused, answer.messages
        value = answer.rows[0][0]
        assert value is not None
        shown = value.decode()
        assert shape not in shown and kept in shown and "*" in shown, (shape, shown)


@pytest.mark.parametrize(
    "card",
    [
        "4111*1111|1111-1111",  # separators mixed
        "4111 - 1111 - 1111 - 1111",  # a dash between spaces
        "4111 / 1111 / 1111 / 1111",
        "4111 . 1111 . 1111 . 1111",
    ],
)
def test_a_card_with_mixed_or_spaced_separators_is_masked(card: str) -> None:
    masker = everything()
    assert masker.mask_text(card) == ("[REDACTED:credit_card]", Counter({"credit_card": 1}))
    assert masker.may_detect(card.encode())


@pytest.mark.parametrize(
    "text",
    [
        "4111:1111.1111:1111",  # a colon among others
        "1234 | 5678 | 9012 | 3456",  # table cells (a card's digits: probe_p3)
        "1234, 5678, 9012, 3456",  # a list
    ],
)
def test_cells_and_lists_of_numbers_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


@pytest.mark.parametrize(
    ("address", "partial"),
    [
        ("ann[@]example.com", "a***@example.com"),
        ("ann(@)example.com", "a***@example.com"),
        ("ann @ example.com", "a***@example.com"),
        ("ann [@] example [.] com", "a***@example [.] com"),
        ("ann@example[.]com", "a***@example[.]com"),
        ("ann@example(.)co(.)uk", "a***@example(.)co(.)uk"),
    ],
)
def test_an_at_in_brackets_or_spaces_and_a_dot_in_brackets(address: str, partial: str) -> None:
    masked, counts = everything().mask_text(f"mail {address} now")
    assert masked == "mail [REDACTED:email] now", masked
    assert counts == Counter({"email": 1})
    assert everything("partial").mask_text(address)[0] == partial


@pytest.mark.parametrize("text", ["x @ 5.00", "me @ home", "reply @ann thanks", "a @ b.c"])
def test_an_at_between_spaces_without_an_address_stays(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


@pytest.mark.parametrize(
    "address",
    [
        "ann dot smith at example dot com",
        "ann (dot) smith (at) example (dot) com",
        "ann dot b dot smith at example dot com",
    ],
)
def test_a_local_part_with_its_dots_spelt_is_masked_whole(address: str) -> None:
    masked, counts = everything().mask_text(f"mail {address} now")
    assert masked == "mail [REDACTED:email] now", masked
    assert counts == Counter({"email": 1})
