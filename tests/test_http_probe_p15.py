"""worded_field tries a name's words only against the rules they may match (brief P13,
helper webattack3): a field's other names in other languages (FIELD_ALIASES, afd4817)
made a hundred rules, each tried in turn for every word that began like any of them
(3.2x the time per name). The rules are now indexed by their first word; the answers
are the plain loop's, checked here against it on random names."""

from __future__ import annotations

import random

from portcullis.masking import (
    Masker,
    _same_word,
    _word_gate,
    field_words,
    worded_field,
)
from portcullis.verdict import MaskRule

FIELDS = ("api_key", "card_number", "email", "iban", "password", "phone", "ssn", "token")


def _plain(
    worded: tuple[tuple[str, tuple[str, ...]], ...], words: tuple[str, ...], plural: bool
) -> str:
    endings = ("", "s", "es") if plural else ("",)
    for field, rule, joined, _longs in _word_gate(worded)[2]:
        for start, word in enumerate(words):
            if _same_word(word, joined, endings) or (
                len(words) - start >= len(rule)
                and all(
                    _same_word(w, r, endings) for w, r in zip(words[start:], rule, strict=False)
                )
            ):
                return field
    return ""


def test_worded_field_answers_as_the_plain_loop() -> None:
    worded = field_words(Masker([MaskRule(field=f) for f in FIELDS], b"k" * 32))
    vocab = sorted({w for _, words in worded for w in words})
    vocab += [
        "id",
        "name",
        "pg",
        "my",
        "s",
        "number",
        "phones",
        "cardnumbers",
        "iphone",
        "xcontrasena",
    ]
    rng = random.Random(7)
    for _ in range(20000):
        words = tuple(
            rng.choice(vocab) if rng.random() < 0.8 else "".join(rng.sample(vocab, 2))
            for _ in range(rng.randint(1, 4))
        )
        for plural in (True, False):
            assert worded_field(worded, words, plural) == _plain(worded, words, plural), words
