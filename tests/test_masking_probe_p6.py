"""Masking probe, part 6: a short password after a key naming it, and the masks the rescan reads.

The token detector read a value after a password-like key only when it was 32 random
characters or more, so `DB_PASSWORD=hunter2` in a log a reader may cat, `password: s3cr3t`
in an HTTP body, `PGPASSWORD='abc'` in a Postgres text column went as they came. A rule
that masked any value after such a key was taken back (6f98d16): the rescan (a masked
text read again) read its own `[REDACTED]`, `[REDACTED:token]` or hash as a password and
masked over it (`****TED]`). The value after a key naming a secret (password, passwd, pwd,
pass, secret, token, api_key, *_PASSWORD ...; =, :, quotes, JSON, YAML, ini, env, flags,
XML, SQL, URL userinfo) is now masked whatever its length, and a value that is a mask
already is left as it is, so every strategy's output is its own fixed point.

Real components: sshd and the SSH proxy (a reader's `cat` of an env file), a PDP on the
shipped policy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ssh_proxy import ssh_policy, ssh_stack

from portcullis.masking import DETECTORS, Masker, detect
from portcullis.verdict import MaskRule

READER = ("readonly",)


def masker(strategy: str) -> Masker:
    return Masker([MaskRule(detector=d, strategy=strategy) for d in DETECTORS], b"k" * 32)


# (text, the secret it holds)
NAMED = [
    ("DB_PASSWORD=hunter2", "hunter2"),
    ("password: s3cr3t", "s3cr3t"),
    ("PGPASSWORD='abc'", "abc"),
    ('{"password": "hunter2", "user": "ann"}', "hunter2"),
    ('{"password":"hu\\"nter2"}', 'hu\\"nter2'),
    ('{\\"password\\": \\"hunter2\\"}', "hunter2"),
    ("export MYSQL_PWD=abc", "abc"),
    ("DB_PASS=xyz9", "xyz9"),
    ("smtpPass=abcd", "abcd"),
    ("client_secret=abc def", "abc"),
    ("x-api-key: k1z", "k1z"),
    ("AWS_SECRET_ACCESS_KEY=abc", "abc"),
    ("token: 5x", "5x"),
    ("postgres://app:hunter2@db:5432/shop", "hunter2"),
    ("curl -u ann:s3cret http://x", "s3cret"),
    ("mysql --password hunter2 -h db", "hunter2"),
    ("<password>hunter2</password>", "hunter2"),
    ("ALTER ROLE app PASSWORD 'hunter2'", "hunter2"),
    ("CREATE USER a IDENTIFIED BY 'pw1x'", "pw1x"),
    ("monkey: password=abc", "abc"),
    ("User{name=ann, password=abc}", "abc"),
    ("(password=abc)", "abc"),
    ("a?user=ann&password%3Dhunter2", "hunter2"),
    ('password = "correct horse"', "correct horse"),
    ("[db]\npassword = hunter2\n", "hunter2"),
    ("db:\n  password: hunter2\n", "hunter2"),
    ("password=hunter2345", "hunter2345"),
    ("password: |\n  hunter2\n", "hunter2"),
    ("db:\n  password: >-\n    correct horse\n    battery staple\n  user: ann\n", "staple"),
]
# no secret here: the key names none, or the value is a literal or a mask already
UNNAMED = [
    "PWD=/home/ann",
    "OLDPWD=/tmp",
    "pass: 12, fail: 0",
    "max_tokens: 100",
    "bypass=1",
    "compass: north",
    "key: value",
    "token=false",
    "password reset link sent",
    "token expired",
    "the secret to a good token is patience and a key",
    "password: [REDACTED]",
    '{"password": "[REDACTED]"}',
    "password=[REDACTED:token]",
    "password=sha256:0123456789abcdef",
    "password=****",
    "api_key=****2345",
    "order 20231107-0042 at 2023-11-07T10:00:00Z id 550e8400-e29b-41d4-a716-446655440000",
]


@pytest.mark.parametrize(("text", "secret"), NAMED)
@pytest.mark.parametrize("strategy", ["partial", "redact", "hash"])
def test_a_value_after_a_key_naming_a_secret_is_masked(
    text: str, secret: str, strategy: str
) -> None:
    masked, counts = masker(strategy).mask_text(text)
    assert secret not in masked, masked
    assert counts["token"] >= 1, counts


@pytest.mark.parametrize("text", UNNAMED)
def test_a_value_naming_no_secret_is_left(text: str) -> None:
    assert detect("token", text) == [], text
    assert masker("partial").mask_text(text)[0] == text


@pytest.mark.parametrize(("text", "secret"), NAMED)
@pytest.mark.parametrize("strategy", ["partial", "redact", "hash"])
def test_a_masked_text_is_its_own_fixed_point(text: str, secret: str, strategy: str) -> None:
    """What a strategy makes of a password is a mask the detectors leave (before: the
    rescan read `[REDACTED:token]` as a password: `****TED]`)."""
    m = masker(strategy)
    masked, _ = m.mask_text(text)
    again, counts = m.mask_text(masked)
    assert again == masked and not counts, (masked, again)
    assert "TED]" not in masked.replace("[REDACTED:token]", "")


def test_the_forms_each_strategy_gives() -> None:
    assert masker("partial").mask_text("DB_PASSWORD=hunter2")[0] == "DB_PASSWORD=****"
    assert masker("redact").mask_text("password: s3cr3t")[0] == "password: [REDACTED:token]"
    hashed = masker("hash").mask_text("PGPASSWORD='abc'")[0]
    assert hashed.startswith("PGPASSWORD='sha256:") and len(hashed) == 12 + 7 + 16 + 1
    # a password too short to show a part of: all of it hidden (10 characters kept 4)
    assert masker("partial").mask_text("password=hunter2345")[0] == "password=****"
    # a long token keeps its last four, as before
    long_key = "api_key=9f86d081884c7d659a2feaa0c55ad015"
    assert masker("partial").mask_text(long_key)[0] == "api_key=****d015"
    # a passphrase's or a YAML block's last four are a word of it: none kept
    phrase = 'password = "correct horse battery staple"'
    assert masker("partial").mask_text(phrase)[0] == 'password = "****"'
    block = "db:\n  password: >-\n    correct horse\n    battery staple\n  user: ann\n"
    assert masker("partial").mask_text(block)[0] == "db:\n  password: >-\n    ****\n  user: ann\n"


def test_a_field_masked_json_document_is_left_by_the_detectors() -> None:
    """A JSON field rule's `[REDACTED]` in a document then read as text (what pg mask p2's
    COPY and mcp p3's documents hold) stays `[REDACTED]`."""
    m = Masker([MaskRule(field="password"), *(MaskRule(detector=d) for d in DETECTORS)], b"k" * 32)
    doc, _ = m.mask_json({"password": "hunter2", "note": "DB_PASSWORD=abc"})
    assert doc == {"password": "[REDACTED]", "note": "DB_PASSWORD=[REDACTED:token]"}
    text = '{"status": "ok", "password": "[REDACTED]"}'
    assert m.mask_text(text)[0] == text


def test_ascii_bytes_with_a_short_password_are_not_cleared_unread() -> None:
    """Masker.may_detect took a short value without a `t` for quiet: `pwd=x` (`db_pwd=x`,
    `DB_PASS=x`, `app_key=x`) was never read."""
    m = masker("partial")
    for value in (b"db_pwd=x", b"DB_PASS=abc", b"session_key=ab", b"-u a:b"):
        assert m.may_detect(value), value
    assert m.mask_text("db_pwd=x")[0] == "db_pwd=****"


@pytest.mark.integration
async def test_a_readers_cat_of_an_env_file_shows_no_short_password(tmp_path: Path) -> None:
    """A reader outside pii-readers cats an env file through the SSH proxy (asyncssh
    client, sshd upstream): its short passwords come masked, the rest as it is."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.env").write_text(
        "DB_HOST=db.internal\nDB_PASSWORD=hunter2\nexport PGPASSWORD='s3cr3t'\n"
        "REDIS_URL=redis://app:pa55w@cache:6379/0\nWORKERS=4\n"
    )
    policy = str(ssh_policy(tmp_path, f"cat {conf}/*"))
    async with ssh_stack(tmp_path, extra={"policies": policy}) as s:  # noqa: SIM117
        async with await s.connect(READER) as conn:
            result = await conn.run(f"cat {conf}/app.env")
    out = str(result.stdout)
    assert result.exit_status == 0, result
    for secret in ("hunter2", "s3cr3t", "pa55w"):
        assert secret not in out, out
    assert "DB_HOST=db.internal\nDB_PASSWORD=****\n" in out, out
    assert "PGPASSWORD='****'" in out and "redis://app:****@cache:6379/0" in out, out
    assert "WORKERS=4" in out
