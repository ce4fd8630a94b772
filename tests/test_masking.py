"""Masking (detectors, strategies, columns, JSON) and the secret-exposure scanner."""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from portcullis.masking import (
    HASH_PREFIX,
    REDACTED,
    Masker,
    MaskingError,
    detect,
    luhn_valid,
)
from portcullis.verdict import MaskRule
from proxies.runtime.secrets_scan import SecretScanner, base64_cores

KEY = b"k" * 32
ALL_DETECTORS = ("email", "credit_card", "ssn", "token")


def masker(*rules: MaskRule, key: bytes = KEY) -> Masker:
    return Masker(list(rules), key)


def detectors(strategy: str = "redact") -> Masker:
    return masker(*(MaskRule(detector=d, strategy=strategy) for d in ALL_DETECTORS))


def found(name: str, text: str) -> list[str]:
    return [text[a:b] for a, b in detect(name, text)]


# ---------------------------------------------------------------- detectors

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("email", "write to alice@example.com today", ["alice@example.com"]),
        ("email", "<bob.smith+tag@mail.example.co.uk>", ["bob.smith+tag@mail.example.co.uk"]),
        ("email", "a@b.c and user@localhost and @handle", []),
        ("email", "no at sign here at all", []),
        ("credit_card", "card 4111111111111111 ok", ["4111111111111111"]),
        ("credit_card", "card 4111 1111 1111 1111 exp", ["4111 1111 1111 1111"]),
        ("credit_card", "card 4111-1111-1111-1111.", ["4111-1111-1111-1111"]),
        ("credit_card", "amex 3782 822463 10005", ["3782 822463 10005"]),
        ("credit_card", "4111 1111 1111 1111 12/25", ["4111 1111 1111 1111"]),
        ("credit_card", "order 4111111111111112 fails luhn", []),
        ("credit_card", "id 1234567890123456", []),
        ("credit_card", "zeros 0000000000000000", []),
        ("credit_card", "25 digits 4111111111111111000000000", []),
        ("credit_card", "dates 2024-01-15 2024-01-16 99", []),
        ("ssn", "ssn 123-45-6789.", ["123-45-6789"]),
        ("ssn", "000-12-3456 666-12-3456 912-34-5678", []),
        ("ssn", "123-00-4567 123-45-0000", []),
        ("ssn", "phone 555-123-45-6789 and 123-45-67890", []),
        ("token", "Authorization: Bearer abc123def456ghi789", ["abc123def456ghi789"]),
        ("token", "authorization: bearer " + JWT, [JWT]),
        ("token", "the bearer instrument was lost", []),
        ("token", "Authorization: Basic dXNlcjpwYXNzd29yZA==", ["dXNlcjpwYXNzd29yZA=="]),
        ("token", "basic functionality works", []),
        ("token", "jwt " + JWT + " end", [JWT]),
        ("token", "key sk-proj-abcdefghijklmnopqrstuvwx", ["sk-proj-abcdefghijklmnopqrstuvwx"]),
        ("token", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", ["sk_live_4eC39HqLyjWDarjtT1zdp7dc"]),
        ("token", "pk_live_4eC39HqLyjWDarjtT1zdp7dc", ["pk_live_4eC39HqLyjWDarjtT1zdp7dc"]),
        ("token", "ghp_" + "a1B2" * 9, ["ghp_" + "a1B2" * 9]),
        ("token", "gho_" + "Z9y8" * 9, ["gho_" + "Z9y8" * 9]),
        (
            "token",
            "github_pat_11ABCDEFG0abcdefghijkl_xyz",
            ["github_pat_11ABCDEFG0abcdefghijkl_xyz"],
        ),
        ("token", "slack xoxb-123456789012-abcdefghij", ["xoxb-123456789012-abcdefghij"]),
        ("token", "aws AKIAIOSFODNN7EXAMPLE region", ["AKIAIOSFODNN7EXAMPLE"]),
        (
            "token",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            ["AIzaSyA1234567890abcdefghijklmnopqrstuv"],
        ),
        ("token", "api_key=9f86d081884c7d659a2feaa0c55ad015", ["9f86d081884c7d659a2feaa0c55ad015"]),
        (
            "token",
            '{"client_secret": "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"}',
            ["Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"],
        ),
        ("token", "token=" + "a" * 40, []),
        ("token", "request 550e8400-e29b-41d4-a716-446655440000 done", []),
        ("token", "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", []),
        ("token", "a task-force of skeptical ghosts and askers", []),
        ("token", "the secret to a good token is patience and a key", []),
    ],
)
def test_detector_table(name, text, expected):
    assert found(name, text) == expected


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("4111111111111111", True), ("4111111111111112", False), ("378282246310005", True),
     ("79927398713", True), ("79927398710", False)],
)  # fmt: skip
def test_luhn(digits, valid):
    assert luhn_valid(digits) is valid


def test_plain_text_without_candidates_is_left_alone():
    m = detectors()
    text = "The quick brown fox jumps over the lazy dog while 42 cats watch the window sill."
    assert m.mask_text(text) == (text, Counter())


def test_pathological_inputs_are_handled():
    # shapes that make a careless regex backtrack; speed is measured in bench/, not here
    m = detectors()
    for text in ("a" * 20000 + "@", "1 " * 10000, "1-" * 10000, "x_" * 10000 + "token="):
        masked, _ = m.mask_text(text)
        assert isinstance(masked, str)


# ---------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    ("detector", "value", "partial"),
    [
        ("email", "alice@example.com", "a***@example.com"),
        ("email", "a@example.com", "***@example.com"),
        ("credit_card", "4111 1111 1111 1111", "**** **** **** 1111"),
        ("credit_card", "4111111111111111", "************1111"),
        ("ssn", "123-45-6789", "***-**-6789"),
        ("token", "AKIAIOSFODNN7EXAMPLE", "****MPLE"),
    ],
)
def test_detector_strategies(detector, value, partial):
    text = f"x {value} y"
    for strategy, expected in (
        ("redact", f"[REDACTED:{detector}]"),
        ("partial", partial),
    ):
        m = masker(MaskRule(detector=detector, strategy=strategy))
        assert m.mask_text(text) == (f"x {expected} y", Counter({detector: 1}))
    hashed, counts = masker(MaskRule(detector=detector, strategy="hash")).mask_text(text)
    assert counts == Counter({detector: 1})
    digest = hashed.split()[1]
    assert digest.startswith(HASH_PREFIX) and len(digest) == len(HASH_PREFIX) + 16
    assert value not in hashed


def test_hash_is_keyed_and_joinable():
    rule = MaskRule(field="email", strategy="hash")
    a, b = masker(rule), masker(rule)
    other_key = masker(rule, key=b"z" * 32)
    assert a.mask_field(rule, "alice@example.com") == b.mask_field(rule, "alice@example.com")
    assert a.mask_field(rule, "alice@example.com") != a.mask_field(rule, "bob@example.com")
    assert a.mask_field(rule, "alice@example.com") != other_key.mask_field(
        rule, "alice@example.com"
    )


def test_hash_needs_a_real_key():
    with pytest.raises(MaskingError, match="key"):
        masker(MaskRule(field="ssn", strategy="hash"), key=b"")
    masker(MaskRule(field="ssn", strategy="redact"), key=b"")  # no hash, no key needed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.com", "a***@example.com"),
        ("4111-1111-1111-1111", "****-****-****-1111"),
        ("123-45-6789", "***-**-6789"),
        ("ghp_" + "a1B2" * 9, "****a1B2"),
        ("Springfield", "****ld"),
        ("abc", "****"),
    ],
)
def test_partial_field_keeps_what_the_value_kind_allows(value, expected):
    rule = MaskRule(field="x", strategy="partial")
    assert masker(rule).mask_field(rule, value) == expected


def test_field_redact():
    rule = MaskRule(field="ssn")
    assert masker(rule).mask_field(rule, "123-45-6789") == REDACTED


@pytest.mark.parametrize(
    "rule",
    [
        MaskRule(field="a", detector="email"),
        MaskRule(),
        MaskRule(field="a", strategy="shred"),
        MaskRule(detector="passport"),  # (no such detector; iban is one since masking p8)
    ],
)
def test_rules_that_cannot_be_enforced_fail_closed(rule):
    with pytest.raises(MaskingError):
        masker(rule)


def test_stricter_rule_wins_for_the_same_target():
    m = masker(
        MaskRule(field="email", strategy="partial"),
        MaskRule(field="EMAIL", strategy="redact"),
        MaskRule(detector="ssn", strategy="partial"),
        MaskRule(detector="ssn", strategy="redact"),
    )
    assert m.columns_to_mask(["email"])[0].strategy == "redact"
    assert m.mask_text("ssn 123-45-6789")[0] == "ssn [REDACTED:ssn]"


# ---------------------------------------------------------------- columns


def test_columns_to_mask():
    m = masker(
        MaskRule(field="email"),
        MaskRule(field="customers.card_number", strategy="partial"),
        MaskRule(field="ssn", strategy="hash"),
    )
    names = ["id", "Email", "public.customers.EMAIL", "card_number", "orders.card_number",
             "customers.card_number", "ssn_last4", "SSN", "emailed"]  # fmt: skip
    got = {names[i]: r.field for i, r in m.columns_to_mask(names).items()}
    assert got == {
        "Email": "email",
        "public.customers.EMAIL": "email",
        "card_number": "customers.card_number",  # unqualified: masked to be safe
        "customers.card_number": "customers.card_number",
        "SSN": "ssn",
    }


def test_empty_masker_is_falsy_and_passes_through():
    m = masker()
    assert not m
    assert m.mask_text("alice@example.com") == ("alice@example.com", Counter())
    assert m.mask_json({"email": "x"}) == ({"email": "x"}, Counter())
    assert detectors()


# ---------------------------------------------------------------- JSON


def test_mask_json_walks_nested_arrays_and_counts():
    m = masker(
        MaskRule(field="email"),
        MaskRule(field="user.phone", strategy="partial"),
        MaskRule(field="card_number"),
        MaskRule(detector="credit_card", strategy="partial"),
        MaskRule(detector="email"),
    )
    doc = {
        "users": [
            {"EMAIL": "a@example.com", "phone": "+1 555 0100", "tags": [["pay 4111111111111111"]]},
            {"email": None, "card_number": 4111111111111111, "note": "mail bob@example.com"},
        ],
        "user": {"phone": "+1 555 0199", "card_number": {"n": "4111111111111111"}},
        "total": 4111111111111111,
        "ok": True,
        "bob@example.com": 1.5,
    }
    original = json.loads(json.dumps(doc))
    out, counts = m.mask_json(doc)
    assert doc == original  # the input is not modified
    assert out == {
        "users": [
            {"EMAIL": REDACTED, "phone": "+1 555 0100", "tags": [["pay ************1111"]]},
            {"email": None, "card_number": REDACTED, "note": "mail [REDACTED:email]"},
        ],
        "user": {"phone": "****99", "card_number": REDACTED},
        "total": "************1111",
        "ok": True,
        "[REDACTED:email]": 1.5,
    }
    assert counts == Counter(
        {
            "field:email": 1,
            "field:user.phone": 1,
            "field:card_number": 2,
            "detector:credit_card": 2,
            "detector:email": 2,
        }
    )


def test_mask_json_scalars_and_colliding_keys():
    m = masker(MaskRule(field="secret", strategy="hash"), MaskRule(detector="email"))
    out, _ = m.mask_json({"a@x.io": 1, "b@x.io": 2, "secret": 12345})
    assert out["[REDACTED:email]"] == 1 and out["[REDACTED:email]#2"] == 2
    assert out["secret"].startswith(HASH_PREFIX)
    assert m.mask_json("mail a@x.io")[0] == "mail [REDACTED:email]"
    assert m.mask_json([None, 1, 2.5, False]) == ([None, 1, 2.5, False], Counter())


def test_mask_json_deep_nesting_does_not_recurse():
    doc: object = "alice@example.com"
    for _ in range(5000):
        doc = [doc]
    out, counts = masker(MaskRule(detector="email")).mask_json(doc)
    for _ in range(5000):
        out = out[0]
    assert out == "[REDACTED:email]" and counts == Counter({"detector:email": 1})


def test_no_original_value_in_errors_or_repr():
    secret = "hunter2-very-private"
    m = masker(MaskRule(field="password"))
    assert secret not in repr(m)
    with pytest.raises(TypeError) as info:
        m.mask_json({"x": {secret}})
    assert secret not in str(info.value)
    with pytest.raises(AttributeError):
        m._rules = ()  # immutable


# ---------------------------------------------------------------- properties

MASK_VOCABULARY = set("[]REDACTsha256:0123456789abcdef*")


@settings(max_examples=200, deadline=None)
@given(
    value=st.text(min_size=6),
    strategy=st.sampled_from(["redact", "hash"]),
    field=st.sampled_from(["email", "ssn", "card_number", "token"]),
)
def test_masked_field_never_leaks_its_value(value, strategy, field):
    # a value made only of the mask's own characters could coincide with the mask
    assume(not set(value) <= MASK_VOCABULARY)
    m = masker(
        MaskRule(field=field, strategy=strategy), *(MaskRule(detector=d) for d in ALL_DETECTORS)
    )
    assert value not in m.mask_field(m.rules[0], value)
    out, counts = m.mask_json({field: value, "rows": [{field.upper(): value}]})
    # read in the JSON text too, where the mask stands quoted: '"[REDA' is the mask's own
    # characters and a quote, no leak
    if not set(value) <= MASK_VOCABULARY | set('"'):
        assert value not in json.dumps(out, ensure_ascii=False)
    assert counts["field:" + field] == 2
    # count keys come from rule names only, never from the data
    assert set(counts) <= {"field:" + field, *("detector:" + d for d in ALL_DETECTORS)}


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_mask_text_never_raises(text):
    for strategy in ("redact", "hash", "partial"):
        masked, counts = detectors(strategy).mask_text(text)
        assert isinstance(masked, str)
        assert all(key in ALL_DETECTORS for key in counts)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789 -@.abcxyzAKIBearer:=_", max_size=80))
def test_mask_text_never_raises_on_near_misses(text):
    detectors("partial").mask_text(text)


# ---------------------------------------------------------------- secret scanner

SECRET = "s3cr3t-P@ssw0rd!"


def scan(secrets, *chunks: bytes) -> SecretScanner:
    scanner = SecretScanner(secrets)
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner


def test_raw_secret_split_across_two_and_three_chunks():
    raw = SECRET.encode()
    assert scan([SECRET], b"row: " + raw[:5], raw[5:] + b" end").findings == ["raw"]
    three = scan([SECRET], b"x" * 100 + raw[:3], raw[3:9], raw[9:] + b"y" * 100)
    assert three.exposed and three.findings == ["raw"]


@pytest.mark.parametrize("offset", [0, 1, 2])
@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_base64_at_every_alignment(offset, urlsafe, padded):
    secret = b"\xfb\xff" + SECRET.encode() + b"\xfe"  # bytes that differ between alphabets
    payload = b"u" * offset + secret + b"tail"[: (offset + 1) % 3]
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(payload)
    if not padded:
        encoded = encoded.rstrip(b"=")
    scanner = scan([secret], b'{"blob": "' + encoded[:7], encoded[7:] + b'"}')
    assert scanner.findings == ["base64"]


def test_base64_cores_are_substrings_at_their_alignment():
    secret = b"correct horse battery"
    for offset, core in enumerate(base64_cores(secret)):
        assert core in base64.b64encode(b"\x00\x01"[:offset] + secret + b"!")


@pytest.mark.parametrize("upper", [False, True])
def test_hex_forms(upper):
    encoded = SECRET.encode().hex()
    encoded = encoded.upper() if upper else encoded
    assert scan([SECRET], b"dump " + encoded.encode()).findings == ["hex"]


@pytest.mark.parametrize(
    ("cased", "how"),
    [(str.upper, "upper-cased"), (str.lower, "lower-cased"), (str.swapcase, "case-swapped")],
)
def test_the_secret_with_its_case_changed_is_exposed_too(cased, how):
    """An upstream that hands the client its key upper-cased (or so encoded) has exposed
    it: the HTTP guard cuts those forms, and the "never exposed" evidence must see them."""
    changed = cased(SECRET).encode()
    assert scan([SECRET], b"key: " + changed[:6], changed[6:]).findings == [f"raw {how}"]
    encoded = base64.b64encode(b"k=" + changed)
    assert scan([SECRET], encoded).findings == [f"base64 {how}"]
    assert scan([SECRET], changed.hex().encode()).findings == [f"hex {how}"]


def test_escaped_forms():
    secret = 'pa"ss/word+1'
    assert scan([secret], json.dumps({"p": secret}).encode()).findings == ["json-escaped"]
    assert scan([secret], b"?p=pa%22ss%2Fword%2B1").findings == ["percent-encoded"]


def test_no_false_positive_and_short_secrets_counted():
    scanner = scan(
        [SECRET, "abc", ""],
        b"SELECT * FROM orders; s3cr3t-P@ss; " + base64.b64encode(b"something else") + b"abc",
    )
    assert not scanner.exposed and scanner.findings == []
    assert scanner.too_short == 1


def test_findings_and_repr_never_carry_the_secret():
    scanner = scan([SECRET, "api-token-123456"], SECRET.encode() + b"api-token-123456")
    assert scanner.findings == ["raw"]
    text = repr(scanner) + " ".join(scanner.findings)
    assert SECRET not in text and "api-token" not in text


def test_scanner_without_secrets():
    scanner = scan([], b"anything")
    assert not scanner.exposed and scanner.too_short == 0


@settings(max_examples=300, deadline=None)
@given(
    secret=st.binary(min_size=8, max_size=64),
    before=st.binary(max_size=200),
    after=st.binary(max_size=200),
    data=st.data(),
)
def test_raw_secret_always_found_however_the_stream_is_cut(secret, before, after, data):
    stream = before + secret + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    scanner = scan([secret], *chunks)
    assert scanner.exposed and "raw" in scanner.findings


def test_a_json_key_naming_a_field_in_other_words_is_masked() -> None:
    """mask_json (MCP results, a database's json values) reads a key's words as the HTTP
    proxy reads a body's names: userPassword, user_password, DB_PASSWORD, phones,
    fullwidth letters and a zero-width space between letters name the rule's field."""
    masker = Masker(
        [MaskRule(field=f, strategy="redact") for f in ("password", "card_number", "phone")],
        b"k" * 16,
    )
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "password")
    keys = ("user_password", "userPassword", "DB_PASSWORD", "passwordHash", "password ",
            fullwidth, "pass\u200bword", "cardNumber", "card-number", "phones")  # fmt: skip
    masked, counts = masker.mask_json({k: "hunter2-4111" for k in keys} | {"name": "Ann"})
    assert all(masked[k] == "[REDACTED]" for k in keys), masked
    assert masked["name"] == "Ann"
    assert counts["field:password"] == 7 and counts["field:card_number"] == 2
    # nested, and the same key met again (remembered) masks alike
    again, _ = masker.mask_json({"rows": [{"userPassword": "x"}, {"userPassword": "y"}]})
    assert again == {"rows": [{"userPassword": "[REDACTED]"}, {"userPassword": "[REDACTED]"}]}
