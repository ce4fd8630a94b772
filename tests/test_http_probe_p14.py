"""Probing the masks (brief P13, helper webattack3): a field labelled in another language.

A reader outside pii-readers (READER_MASKS: the fields `password`, `phone`, `email`,
`card_number`, `ssn`, `api_key` masked). Before the fix a label in another language
(`contraseña: hunter2`, `Passwort`, `mot de passe`, `Teléfono`, `пароль`) named no field:
the value beside it went whole in a JSON key, a text line, a CSV column, and to Postgres
a column so named. masking.FIELD_ALIASES now holds the fields' names in other languages,
and name_words reads a name past its accents (NFKD, marks dropped: `contraseña` is
contrasena) and a word in another script as one word (`hasło`, `пароль`).
"""

from __future__ import annotations

import json

import pytest
from test_http_probe_p4 import READER_MASKS

from portcullis.masking import name_words
from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

HIDDEN = ("hunter2", "5550100")
LABELS = (
    "contraseña", "Contraseña", "Passwort", "Kennwort", "mot de passe", "Mot_de_passe",
    "senha", "wachtwoord", "lösenord", "hasło", "пароль", "Пароль", "密码", "パスワード",
    "비밀번호", "Teléfono", "telefono", "Telefon", "téléphone", "телефон", "电话",
)  # fmt: skip


def _masked(content_type: str, body: str) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


def _value(label: str) -> str:
    return "5550100" if "tel" in label.lower() or label in ("телефон", "电话") else "hunter2"


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("shape", ["json key", "text line", "csv column", "pair"])
def test_a_field_labelled_in_another_language_is_masked(label: str, shape: str) -> None:
    value = _value(label)
    content_type, body = {
        "json key": ("application/json", json.dumps({label: value}, ensure_ascii=False)),
        "text line": ("text/plain", f"{label}: {value}\n"),
        "csv column": ("text/csv", f"id,{label}\n7,{value}\n"),
        "pair": ("application/json", json.dumps({"name": label, "value": value})),
    }[shape]
    try:
        out = _masked(content_type, body)
    except Unmaskable:
        return
    assert not any(hidden.encode() in out for hidden in HIDDEN), out


def test_names_are_read_past_accents_and_in_other_scripts() -> None:
    assert name_words("contraseña") == ("contrasena",)
    assert name_words("Téléphone_Number") == ("telephone", "number")
    assert name_words("hasło") == ("hasło",)
    assert name_words("userPhoneNumber") == ("user", "phone", "number")
    assert name_words("\uff50\uff48\uff4f\uff4e\uff45") == ("phone",)


def test_words_of_other_languages_naming_nothing_stay() -> None:
    body = "Café crème: 3 €\nBonjour: tout va bien\nGrüße aus Köln: 5550100\n"
    assert _masked("text/plain", body) == body.encode()
