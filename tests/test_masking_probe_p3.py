"""Values the detectors passed to a masked reader unread (adversary round 3: a reader's
own SELECT or echo reshapes a value found in a column no rule names, a `notes` text):

- a card's digits joined by a comma, a spaced bar, up to three characters, in pairs
  (`regexp_replace(note, '(..)', '\\1 ', 'g')`), one digit a line (`string_agg`): read
  as a card when one separator joins them all, the groups are of one size, and the
  digits begin and are as long as an issued card's (portcullis.card_groupings);
- an SSN's nine digits written together, where a label says it is one (`SSN: 078051120`,
  `"ssn": "078051120"`, `social security no. 078051120`, `078051120 (SSN)`): a bare
  nine-digit number is an order number or a ZIP+4 far more often, and stays;
- a telephone number written as one (portcullis.phone_numbers: `+1 415 555 0100`,
  `(415) 555-0100`, `+44 20 7946 0958`, `+14155550100`, `phone: 4155550100`): a new
  `phone` detector, which a policy names as it names the others (its last two digits
  kept under partial);
- any of these with characters no one sees put anywhere inside (`41\u200b11\u200b1111...`,
  `ann\u200b@example.com`, `078\u2060-05-1120`): read as well as the reader sees them;
- an address with its @ spelt between spaces and its dot written (`ann at example.com`)
  when it is a whole item: a value, a line, a cell, a list item, after a label's colon
  (what `replace(email, '@', ' at ')` gives); in prose (`meet at example.com tomorrow`,
  `look at github.com`) it stays;
- an address whose @ is escaped as a URL, HTML or a string writes it (`ann%40example.com`,
  `ann&#64;example.com`, `&#x40;`, `&commat;`, `ann\\u0040example.com`), or set off by
  more than one space (`ann  @  example.com`);

Each shape is masked by mask_text and let through by the byte gate (Masker.may_detect);
the ordinary text beside them (dates, times, addresses, versions, UUIDs, hex dumps, lists
of numbers that are no card's) stays as it is.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
from adversary import RawClient
from pg_probe_stack import arena_fixture, reader_fixture
from ssh_probe_stack import READER, stack_fixture
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

KEY = b"k" * 32
DETECTORS = ("email", "ssn", "credit_card", "token", "phone")

arena = arena_fixture()
reader = reader_fixture("mp3")
stack = stack_fixture()


def everything(strategy: str = "redact") -> Masker:
    return Masker([MaskRule(detector=d, strategy=strategy) for d in DETECTORS], KEY)


def assert_masked_as(text: str, detector: str) -> None:
    """`text` inside a sentence comes back with exactly it masked, once, and the byte
    gate lets its bytes through to the detectors."""
    masker = everything()
    masked, counts = masker.mask_text(f"see: {text} -- thanks")
    assert masked == f"see: [REDACTED:{detector}] -- thanks", masked
    assert counts == Counter({detector: 1})
    assert masker.may_detect(text.encode()), text


# ---------------------------------------------------------------- cards

GROUPED_CARDS = [
    "4111,1111,1111,1111",  # string_agg(part, ',')
    "4111, 1111, 1111, 1111",
    "4111 | 1111 | 1111 | 1111",  # spaced bars
    "4111;1111;1111;1111",
    "4111 ; 1111 ; 1111 ; 1111",
    "4111/ 1111/ 1111/ 1111",
    "41 11 11 11 11 11 11 11",  # regexp_replace(card, '(..)', '\1 ', 'g')
    "41-11-11-11-11-11-11-11",
    "41,11,11,11,11,11,11,11",
    "411 111 111 111 111 1",  # threes, the last one shorter
    "4,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",  # string_agg of its digits
    "4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
    "4\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1",  # a digit a line
    "41\r\n11\r\n11\r\n11\r\n11\r\n11\r\n11\r\n11",
    "5500,0000,0000,0004",  # Mastercard
    "3782,822463,10005",  # American Express, 4-6-5
    "37 82 82 24 63 10 00 5",
    "6011 | 1111 | 1111 | 1117",  # Discover
    "4111 || 1111 || 1111 || 1111",  # four characters between groups
    "4111 -- 1111 -- 1111 -- 1111",
    "4111\uff0c1111\uff0c1111\uff0c1111",  # fullwidth commas
    "4111\u30011111\u30011111\u30011111",  # ideographic commas
]


@pytest.mark.parametrize("card", GROUPED_CARDS)
def test_a_card_in_a_grouping_of_its_own_is_masked(card: str) -> None:
    assert_masked_as(card, "credit_card")


def test_a_grouped_card_after_a_date_or_beside_another_is_masked() -> None:
    """A group shared with a neighbouring stretch under another separator (`2024-01-15
    41 11 ...`) may be either's; two cards in a list are two."""
    masker = everything()
    masked, counts = masker.mask_text("2024-01-15 41 11 11 11 11 11 11 11")
    assert masked == "2024-01-15 [REDACTED:credit_card]", masked
    masked, counts = masker.mask_text("4111,1111,1111,1111; 5500,0000,0000,0004")
    assert masked == "[REDACTED:credit_card]; [REDACTED:credit_card]", masked
    assert counts == Counter({"credit_card": 2})


def test_a_grouped_card_under_partial_keeps_its_separators_and_last_four() -> None:
    masked, _ = everything("partial").mask_text("41 11 11 11 11 11 11 11")
    assert masked == "** ** ** ** ** ** 11 11"
    masked, _ = everything("partial").mask_text("4111 | 1111 | 1111 | 1111")
    assert masked == "**** | **** | **** | 1111"


ORDINARY = [
    # dates, times, timestamps
    "2024-01-15 10:30:45.123456+00",
    "15/01/2024 10:30, 16/01/2024 11:45",
    "2024 01 15 10 30 45 123",
    "Mon, 15 Jan 2024 10:30:45 +0100",
    # addresses, versions
    "10.0.0.1, 10.0.0.2, 10.0.0.3",
    "192.168.100.200:8080 -> 192.168.100.201:5432",
    "fe80::1, fe80::2",
    "1.2.3, 1.2.4, 1.3.0, 2.0.0, 2.0.1",
    "v4.11.1111.1111",
    # UUIDs and hex
    "2fc5b4fa-0021-4486-9219-695955b7b439",
    "54ac8776-4024-4305-9384-23335e563b71",
    "00000110  65 64 20 62 79 20 61 20  64 65 62 69 61 6e 20 70  |ed by a debian p|",
    "00002520  20 64 43 61 63 68 65 20  41 63 63 65 73 73 20 50  | dCache Access P|",
    "00000060: d802 0000 0000 0000 d802 0000 0000 0000  ................",
    "sha1 1a2b3c4d5e6f7081 9293949596979899 a0b1c2d3",
    # lists of numbers no card's digits make
    "2019,2020,2021,2022",  # years (20 is no issuer's)
    "1999, 2000, 2001, 2002",
    "1234 | 5678 | 9012 | 3456",
    "4123\n4124\n4125\n4126",  # a column of PIDs (pgrep): larger groups need no line
    "12 23 34 45 56 67 78",  # 14 digits: no issuer of 12
    "4111,1111,1111,1111,2222",  # a longer list
    "4111 | 1111 | 1111 | 1112",  # the check digit fails
    "4111,11111,111,1111",  # groups of no one size
    "load average: 0.52, 0.58, 0.59",
    "Mem:  16318480  8123456  2345678",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_numbers_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


# ---------------------------------------------------------------- SSNs

LABELLED_SSNS = [
    "SSN: 078051120",
    "ssn=078051120",
    '"ssn": "078051120"',
    "customer_ssn | 078051120",
    "Social Security Number 078051120",
    "social security no. 078051120",
    "soc. sec. 078051120",
    "SSN#078051120",
    "SSN:\n078051120",  # a label alone on its line
    "078051120 (SSN)",
    "SSN 078 051 120",  # grouped otherwise, labelled
    "SSN: 0780-51120",
]


@pytest.mark.parametrize("text", LABELLED_SSNS)
def test_nine_digits_labelled_an_ssn_are_masked(text: str) -> None:
    masker = everything()
    masked, counts = masker.mask_text(text)
    assert "078051120" not in masked and "[REDACTED:ssn]" in masked, masked
    assert counts == Counter({"ssn": 1})
    assert masker.may_detect(text.encode()), text
    # (partial: the first five of its digits starred, its separators kept)
    hidden = re.sub(r"0(\D*)7(\D*)8(\D*)0(\D*)5", r"*\1*\2*\3*\4*", text, count=1)
    assert everything("partial").mask_text(text)[0] == hidden


@pytest.mark.parametrize(
    "text",
    [
        "order 078051120 shipped",  # no label
        "zip 94105-1234, order 4155550100",
        "ssn on file; the order number of this customer is 078051120",  # too far
        "SSN: 900051120",  # never issued (9xx, 666, 000 areas; 00 group; 0000 serial)
        "SSN: 666051120",
        "SSN: 078001120",
        "SSN: 078050000",
        "SSN: 0780511201",  # ten digits
        "SSN: 078051120.5",
        "classname 078051120",  # `ssn` inside a word
        "SSN:\n\n\n078051120",  # the label two lines away
        "order 078 051 120",  # grouped otherwise, no label
        "SSN: 900 05 1120",
    ],
)
def test_nine_digits_without_an_ssn_label_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


# ---------------------------------------------------------------- e-mail


ESCAPED_ADDRESSES = [
    ("ann%40example.com", "a***@example.com"),
    ("ann.smith%40example.co.uk", "a***@example.co.uk"),
    ("ann&#64;example.com", "a***@example.com"),
    ("ann&#064;example.com", "a***@example.com"),
    ("ann&#x40;example.com", "a***@example.com"),
    ("ann&#X40;example.com", "a***@example.com"),
    ("ann&commat;example.com", "a***@example.com"),
    ("ann\\u0040example.com", "a***@example.com"),
    ("ann\\x40example.com", "a***@example.com"),
    ("ann  @  example.com", "a***@example.com"),
    ("ann @  example.com", "a***@example.com"),
    ("ann@example\u2024com", "a***@example\u2024com"),  # a dot's look-alikes
    ("ann@example\ufe52com", "a***@example\ufe52com"),
    ("ann@example\u00b7com", "a***@example\u00b7com"),
]


@pytest.mark.parametrize(("address", "partial"), ESCAPED_ADDRESSES)
def test_an_address_with_its_at_escaped_is_masked(address: str, partial: str) -> None:
    assert_masked_as(address, "email")
    assert everything("partial").mask_text(address)[0] == partial


@pytest.mark.parametrize(
    "text",
    ["50%40 off", "100%40example", "a &#64; b", "R&amp;D at example", "path\\x40", "x  @  5.00"],
)
def test_escapes_without_an_address_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


# ---------------------------------------------------------------- telephone numbers

PHONES = [
    ("+1 415 555 0100", "+* *** *** **00"),
    ("+1-415-555-0100", "+*-***-***-**00"),
    ("(415) 555-0100", "(***) ***-**00"),
    ("(415)555-0100", "(***)***-**00"),
    ("(415)-555-0100", "(***)-***-**00"),
    ("415-555-0100", "***-***-**00"),
    ("415.555.0100", "***.***.**00"),
    ("1-415-555-0100", "*-***-***-**00"),
    ("+14155550100", "+*********00"),
    ("+44 20 7946 0958", "+** ** **** **58"),
    ("+33 1 23 45 67 89", "+** * ** ** ** 89"),
    ("+7 (495) 123-45-67", "+* (***) ***-**-67"),
    ("+49 30 901820", "+** ** ****20"),
    ("+81-3-1234-5678", "+**-*-****-**78"),
]


@pytest.mark.parametrize(("phone", "partial"), PHONES)
def test_a_telephone_number_is_masked(phone: str, partial: str) -> None:
    assert_masked_as(phone, "phone")
    assert everything("partial").mask_text(phone)[0] == partial


@pytest.mark.parametrize(
    "text",
    [
        "phone: 4155550100",
        "Tel. 030 901820",
        "mobile 07700 900123",
        "Cell #: 020-7946-0958",
        "Telefon: 030 901820",  # labels of other languages
        "Telefonnummer 030 901820",
        "tel\u00e9fono 912 345 678",
        "Handy 0171 1234567",
        "m\u00f3vil: 612 345 678",
        "celular (11) 91234-5678",
        "T\u00e9l. 01 23 45 67 89",
    ],
)
def test_a_labelled_telephone_number_is_masked(text: str) -> None:
    masker = everything()
    masked, counts = masker.mask_text(text)
    assert masked.endswith("[REDACTED:phone]") and counts == Counter({"phone": 1}), masked
    assert masker.may_detect(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "order 4155550100 shipped",  # digits alone
        "123-456-7890",  # no area code begins with 1
        "415-555-0100-7",  # inside a longer number
        "1.415.555.0100.2",
        "v415.555.0100",
        "+100 200 300 400",  # no country 100
        "+1 234 567 890",  # a +1 number has ten digits after it
        "+1500000.00",  # an amount
        "+12345678",
        "Date: Mon, 15 Jan 2024 10:30:45 +0100",
        "2024-01-15T10:30:45+05:30",
        "mobile app released 2024-01-15 10",  # a date after a label
        "hotel 4155550100",  # no label inside a word
        "handyman 123456789",
        "mobility 2024-01-15 1030",
        "+3 -4 +5",
        "4111 1111 1111 1111",  # a card is a card
    ],
)
def test_numbers_not_written_as_a_telephone_number_stay(text: str) -> None:
    masked, counts = everything().mask_text(text)
    assert "phone" not in counts, (text, masked)


def test_the_phone_detector_runs_only_where_a_policy_names_it() -> None:
    """The shipped policy names its detectors (data.portcullis.detectors); a masker
    built without `phone` leaves telephone numbers as they are."""
    masker = Masker([MaskRule(detector="email", strategy="redact")], KEY)
    assert masker.mask_text("+1 415 555 0100") == ("+1 415 555 0100", Counter())


ITEMS_AT = [
    ("ann at example.com", "[REDACTED:email]"),
    ("ann.smith at mail.example.co.uk", "[REDACTED:email]"),
    ("Ann AT Example.COM", "[REDACTED:email]"),
    ("ann at example.com, bob at example.org", "[REDACTED:email], [REDACTED:email]"),
    ("7 | ann at example.com | active", "7 | [REDACTED:email] | active"),
    ("email: ann at example.com", "email: [REDACTED:email]"),
    ("(ann at example.com)", "([REDACTED:email])"),
    ("ids\nann at example.com\nbob at example.org", "ids\n[REDACTED:email]\n[REDACTED:email]"),
]


@pytest.mark.parametrize(("text", "masked"), ITEMS_AT)
def test_an_address_with_its_at_spelt_as_a_whole_item_is_masked(text: str, masked: str) -> None:
    masker = everything()
    assert masker.mask_text(text)[0] == masked
    assert masker.may_detect(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "meet at example.com tomorrow",  # prose
        "Look at github.com",  # a word prose puts before a site
        "Available at pypi.org",
        "docs: see at docs.python.org",
        "ann at example.com.",  # a sentence
        "ann at example.c",
        "ann at 10.0.0.1",
        "ann at example.community",
    ],
)
def test_an_at_spelt_in_prose_stays(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


# ---------------------------------------------------------------- characters no one sees

UNSEEN = [
    ("41\u200b11\u200b111111111111", "**\u200b**\u200b********1111", "credit_card"),
    ("4111\u200b 1111 1111\u2060 1111", "****\u200b **** ****\u2060 1111", "credit_card"),
    (
        "4\u200d1\u200d1\u200d1 1111 1111 1111",
        "*\u200d*\u200d*\u200d* **** **** 1111",
        "credit_card",
    ),
    ("ann\u200b@example.com", "a***@example.com", "email"),
    ("a\u200bn\u200bn@example.com", "a***@example.com", "email"),
    ("078\u2060-05-1120", "***\u2060-**-1120", "ssn"),
    ("078-\ufeff05-1120", "***-\ufeff**-1120", "ssn"),
    ("+1 415\u200c 555 0100", "+* ***\u200c *** **00", "phone"),
    ("sk-\u200babcdefghijklmnopqrstu1234", "****1234", "token"),
]


@pytest.mark.parametrize(("text", "partial", "detector"), UNSEEN)
def test_a_value_with_characters_no_one_sees_inside_is_masked(
    text: str, partial: str, detector: str
) -> None:
    masked, counts = everything().mask_text(f"see {text} now")
    assert masked == f"see [REDACTED:{detector}] now", masked
    assert counts == Counter({detector: 1})
    assert everything("partial").mask_text(text)[0] == partial
    assert everything().may_detect(text.encode())


@pytest.mark.parametrize(
    "text", ["\u200b", "plain \u200b text", "2024\u200b-01-15", "a\u200d\u200db"]
)
def test_characters_no_one_sees_alone_change_nothing(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter()), text


# ---------------------------------------------------------------- the real stack


@pytest.mark.integration
async def test_a_reader_reading_a_log_through_the_ssh_proxy_sees_the_shapes_masked(
    stack: Stack,
) -> None:
    """The real stack: a readonly reader cats (allowed) a log under /var/log whose lines
    hold the shapes; the SSH proxy's output masking (the shipped detectors) hides each."""
    lines = {
        "4111 | 1111 | 1111 | 1111": "1111 | 1111 | 1111",
        "41 11 11 11 11 11 11 11": "41 11 11",
        "SSN: 078051120": "078051",
        "mail ann%40example.com": "ann%40",
        "ann at example.com": "ann at",
        "card 41\u200b11\u200b111111111111": "41\u200b11",
    }
    logged = Path("/var/log") / f"portcullis-mp3-{os.getpid()}-{stack.tmp.name}.log"
    logged.write_text("".join(line + "\n" for line in lines))
    try:
        async with await stack.connect(READER) as conn:
            result = await conn.run(f"cat {logged}")
    finally:
        logged.unlink()
    assert result.exit_status == 0, result.stderr
    shown = str(result.stdout)
    assert len(shown.splitlines()) == len(lines), shown
    for line, hidden in lines.items():
        assert hidden not in shown, (line, shown)
    assert shown.count("*") > 20, shown


@pytest.mark.integration
def test_a_reader_reshaping_a_value_through_the_postgres_proxy_sees_it_masked(
    reader: RawClient,
) -> None:
    """The real stack: a readonly reader (the shipped detectors, partial) reshapes a value
    with its own SELECT (a table's column reshaped is masked whole by lineage; the
    detectors are what reads a computed text); none comes back whole."""
    card = "4111111111111111"
    reshaped = [
        f"SELECT regexp_replace('{card}', '(..)', '\\1 ', 'g')",
        f"SELECT string_agg(d, ',') FROM regexp_split_to_table('{card}', '') d",
        f"SELECT string_agg(d, E'\\n') FROM regexp_split_to_table('{card}', '') d",
        "SELECT concat_ws(' | ', substr(c, 1, 4), substr(c, 5, 4), substr(c, 9, 4),"
        f" substr(c, 13, 4)) FROM (SELECT '{card}'::text AS c) s",
        "SELECT translate('5500 0000 0000 0004', ' ', ',')",
    ]
    for sql in reshaped:
        answer = reader.query(sql)
        assert not answer.refused, (sql, answer.messages)
        value = answer.rows[0][0]
        assert value is not None, sql
        shown = value.decode()
        digits = "".join(c for c in shown if c.isdigit())
        assert "*" in shown and len(digits) == 4, (sql, shown)


def assert_selected_masked(reader: RawClient, shapes: list[tuple[str, str, str]]) -> None:
    """Each (sql, hidden, kept): the reader's one value comes back without `hidden`, masked
    partially around `kept` (by the detectors) or whole (by the proxy's reading of a
    field's name in prose, `SSN: ...`)."""
    for sql, hidden, kept in shapes:
        answer = reader.query(sql)
        assert not answer.refused, (sql, answer.messages)
        value = answer.rows[0][0]
        assert value is not None, sql
        shown = value.decode()
        assert hidden not in shown, (sql, shown)
        assert (kept in shown and "*" in shown) or "[REDACTED]" in shown, (sql, shown)


@pytest.mark.integration
def test_a_reader_selecting_the_other_shapes_through_the_postgres_proxy_sees_them_masked(
    reader: RawClient,
) -> None:
    """The real stack: a labelled SSN written together, an escaped @, characters no one
    sees inside a card or an address, selected as literals, come back masked (partial)."""
    shapes = [
        ("SELECT 'SSN: 078051120'", "078051120", "1120"),
        ("SELECT 'mail ann%40example.com'", "ann%40", "example.com"),
        ("SELECT 'mail ann&#64;example.com'", "ann&#64;", "example.com"),
        ("SELECT E'card 41\\u200b11\\u200b111111111111'", "4\u200b", "1111"),
        ("SELECT E'mail ann\\u200b@example.com'", "ann\u200b@", "example.com"),
        ("SELECT concat_ws(', ', 4111, 1111, 1111, 1111)", "4111, ", "1111"),
    ]
    assert_selected_masked(reader, shapes)


@pytest.mark.integration
def test_a_reader_selecting_a_telephone_number_through_the_postgres_proxy_sees_it_masked(
    reader: RawClient,
) -> None:
    """The real stack, with the shipped policy naming the phone detector: telephone
    numbers in a computed text come back with only their last two digits."""
    shapes = [
        ("SELECT 'call +1 415 555 0100 today'", "415 555 01", "00"),
        ("SELECT 'office (415) 555-0100'", "415) 555-01", "00"),
        ("SELECT 'london +44 20 7946 0958'", "20 7946 09", "58"),
        ("SELECT 'phone: 4155550100'", "41555501", "00"),
    ]
    assert_selected_masked(reader, shapes)


def test_a_long_hex_word_is_read_in_one_pass() -> None:
    """A reader's value of 64 KiB of hex digits (repeat(md5(...), 2000), a hex dump on one
    line, a body of hex): each run of digits in it looked for its hex word by scanning the
    word whole, 62.9 s of one proxy's event loop for 64 KiB (minutes for 800 KB) while
    every other session waited; the words are found once per text now. What stays: no
    card is read in a hex word's digits, and one beside it still is."""
    word = "".join(f"{i:08x}" for i in range(8192))  # 64 KiB, digits and letters mixed
    masked, counts = everything().mask_text(word)
    assert masked == word and not counts
    card = "4111 1111 1111 1111"
    masked, counts = everything().mask_text(f"{word[:4096]} {card} {word[:4096]}")
    assert card not in masked and counts["credit_card"] == 1, counts
