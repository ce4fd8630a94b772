"""SCRAM-SHA-256 and MD5 client: RFC vectors, the real server's stored verifiers, and real
logins against a throwaway PostgreSQL cluster whose pg_hba.conf asks for passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterator

import pytest
from pg_cluster import throwaway_cluster
from pg_wire import Wire

from proxies.postgres.codec import (
    PROTOCOL_VERSION,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    ErrorResponse,
    Message,
    PasswordMessage,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    StartupMessage,
)
from proxies.postgres.scram import ScramClient, ScramError, md5_password, saslprep

# RFC 7677 section 3: user "user", password "pencil".
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

# Non-ASCII so that SASLprep matters: NBSP maps to a space, U+2168 (ROMAN NUMERAL NINE)
# normalizes to "IX", U+00AD (soft hyphen) maps to nothing.
UNICODE_PASSWORD = "pa\u00a0ss\u00adw\u2168rd"


def test_rfc7677_vector() -> None:
    client = ScramClient("user", "pencil", nonce=RFC_NONCE)
    assert client.first_message() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.final_message(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify_server_final(RFC_SERVER_FINAL)
    assert client.completed


@pytest.mark.parametrize(
    "server_final",
    [
        b"v=" + base64.b64encode(b"\0" * 32),  # wrong signature
        RFC_SERVER_FINAL[:-4] + b"AAA=",  # one byte off
        b"e=invalid-proof",  # server-side error
        b"x=1",  # no signature at all
        b"v=***",  # not base64
        b"",
    ],
)
def test_bad_server_final_is_rejected(server_final: bytes) -> None:
    client = ScramClient("user", "pencil", nonce=RFC_NONCE)
    client.final_message(RFC_SERVER_FIRST)
    with pytest.raises(ScramError):
        client.verify_server_final(server_final)
    assert not client.completed


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=someoneelsesnonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # nonce not ours
        b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # no server part
        b"r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==",  # no iterations
        b"r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        b"r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        b"r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999",  # work bomb
        b"r=rOprNGfwEbeRWgbNEkqOxx,s=!!,i=4096",
        b"m=ext,r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxx,r=again,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"garbage",
        "r=rOprNGfwEbeRWgbNEkqO\u00e9,s=AA==,i=1".encode(),
    ],
)
def test_bad_server_first_is_rejected(server_first: bytes) -> None:
    with pytest.raises(ScramError):
        ScramClient("user", "pencil", nonce=RFC_NONCE).final_message(server_first)


def test_exchange_order_is_enforced() -> None:
    client = ScramClient("user", "pencil", nonce=RFC_NONCE)
    with pytest.raises(ScramError):
        client.verify_server_final(RFC_SERVER_FINAL)
    client.final_message(RFC_SERVER_FIRST)
    with pytest.raises(ScramError):
        client.final_message(RFC_SERVER_FIRST)


def test_nonces_are_fresh_and_username_is_escaped() -> None:
    a, b = ScramClient("a=b,c", "x"), ScramClient("a=b,c", "x")
    assert a.first_message() != b.first_message()
    assert a.first_message().startswith(b"n,,n=a=3Db=2Cc,r=")
    with pytest.raises(ValueError):
        ScramClient("u", "p", nonce="has,comma")


def test_saslprep_follows_rfc4013_examples() -> None:
    assert saslprep("I\u00adX") == b"IX"  # soft hyphen mapped to nothing
    assert saslprep("user") == b"user"
    assert saslprep("USER") == b"USER"  # case preserved
    assert saslprep("\u00aa") == b"a"  # NFKC
    assert saslprep("\u2168") == b"IX"
    assert saslprep("a\u00a0b") == b"a b"
    # Prohibited (U+0007 in a non-ASCII string) or bad bidi: PostgreSQL uses the raw bytes.
    assert saslprep("\u00e9\u0007") == "\u00e9\u0007".encode()
    assert saslprep("\u0627" + "1") == "\u06271".encode()
    assert saslprep(b"\xff\xfe") == b"\xff\xfe"  # not UTF-8: used as is
    assert saslprep("\u00ad") == "\u00ad".encode()  # maps to empty: used as is


def _parse_verifier(verifier: str) -> tuple[int, bytes, bytes, bytes]:
    mechanism, rest = verifier.split("$", 1)
    assert mechanism == "SCRAM-SHA-256"
    iter_salt, keys = rest.split("$")
    iterations, salt = iter_salt.split(":")
    stored_key, server_key = keys.split(":")
    return (
        int(iterations),
        base64.b64decode(salt),
        base64.b64decode(stored_key),
        base64.b64decode(server_key),
    )


def _play_server(verifier: str, client: ScramClient) -> tuple[bytes, bytes]:
    """Play PostgreSQL's side with the stored verifier: check the client's proof the way the
    server does (ClientKey = proof XOR ClientSignature, H(ClientKey) == StoredKey) and return
    (recovered H(ClientKey), StoredKey) plus the server-final-message the server would send."""
    iterations, salt, stored_key, server_key = _parse_verifier(verifier)
    client_first_bare = client.first_message()[3:]
    client_nonce = client_first_bare.split(b",r=", 1)[1]
    server_first = (
        b"r=" + client_nonce + b"serverpart,s=" + base64.b64encode(salt) + b",i=%d" % iterations
    )
    client_final = client.final_message(server_first)
    without_proof, proof_b64 = client_final.split(b",p=")
    auth_message = client_first_bare + b"," + server_first + b"," + without_proof
    signature = hmac.digest(stored_key, auth_message, "sha256")
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof_b64), signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key, "proof does not recover StoredKey"
    return b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256")), stored_key


@pytest.fixture
def scram_verifier() -> Iterator[str]:
    """A role created on the real test server with a SCRAM password; yields rolpassword."""
    import psycopg

    role = f"portcullis_scram_{secrets.token_hex(4)}"
    try:
        conn = psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{UNICODE_PASSWORD}'")
        try:
            row = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
            ).fetchone()
            assert row is not None
            yield row[0]
        finally:
            conn.execute(f"DROP ROLE {role}")


def test_proof_matches_the_servers_stored_verifier(scram_verifier: str) -> None:
    client = ScramClient("", UNICODE_PASSWORD)
    server_final, _ = _play_server(scram_verifier, client)
    client.verify_server_final(server_final)
    assert client.completed


def test_wrong_password_does_not_recover_stored_key(scram_verifier: str) -> None:
    with pytest.raises(AssertionError, match="StoredKey"):
        _play_server(scram_verifier, ScramClient("", UNICODE_PASSWORD + "x"))


def test_saslprep_output_is_what_the_server_hashed(scram_verifier: str) -> None:
    prepared = saslprep(UNICODE_PASSWORD)
    assert prepared == b"pa sswIXrd"
    # ASCII passes SASLprep unchanged, so this proves the server prepared the same bytes.
    _play_server(scram_verifier, ScramClient("", prepared))
    # Hashing the unprepared UTF-8 bytes would not match what the server stored.
    iterations, salt, stored_key, _ = _parse_verifier(scram_verifier)
    salted = hashlib.pbkdf2_hmac("sha256", UNICODE_PASSWORD.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    assert hashlib.sha256(client_key).digest() != stored_key


def test_md5_password_matches_postgres_md5() -> None:
    import psycopg

    try:
        conn = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with conn:
        row = conn.execute("SELECT 'md5' || md5(md5('s3cret' || 'alice') || 'Zq9!')").fetchone()
    assert row is not None
    assert md5_password("alice", "s3cret", b"Zq9!") == row[0].encode()
    with pytest.raises(ValueError):
        md5_password("alice", "s3cret", b"abc")


# --------------------------------------------------------------------------- real logins


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[int]:
    """A throwaway PostgreSQL 15 cluster (its own pg_hba.conf: scram, md5, password);
    yields its TCP port. The machine's main server is trust-only and left untouched."""
    hba = (
        "host all md5user 127.0.0.1/32 md5\n"
        "host all clearuser 127.0.0.1/32 password\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    setup = [
        "SET password_encryption = 'scram-sha-256'",
        f"CREATE ROLE alice LOGIN PASSWORD '{UNICODE_PASSWORD}'",
        "CREATE ROLE clearuser LOGIN PASSWORD 'clear-pw'",
        "SET password_encryption = 'md5'",
        "CREATE ROLE md5user LOGIN PASSWORD 'md5-pw'",
    ]
    with throwaway_cluster(hba, setup=setup) as (port, _):
        yield port


def _startup(port: int, user: str) -> Wire:
    wire = Wire(port=port)
    wire.send(StartupMessage(PROTOCOL_VERSION, {"user": user, "database": "postgres"}))
    return wire


def _scram_login(port: int, password: str) -> tuple[Wire, Message]:
    wire = _startup(port, "alice")
    request = wire.recv()
    assert isinstance(request, AuthenticationSASL)
    assert "SCRAM-SHA-256" in request.mechanisms
    client = ScramClient("alice", password)
    wire.send(SASLInitialResponse("SCRAM-SHA-256", client.first_message()))
    challenge = wire.recv()
    assert isinstance(challenge, AuthenticationSASLContinue)
    wire.send(SASLResponse(client.final_message(challenge.data)))
    outcome = wire.recv()
    if isinstance(outcome, AuthenticationSASLFinal):
        client.verify_server_final(outcome.data)
        assert client.completed
        outcome = wire.recv()
    return wire, outcome


def test_scram_login_against_real_postgres(password_cluster: int) -> None:
    wire, outcome = _scram_login(password_cluster, UNICODE_PASSWORD)
    try:
        assert isinstance(outcome, AuthenticationOk)
        assert isinstance(wire.until(ReadyForQuery, ErrorResponse)[-1], ReadyForQuery)
    finally:
        wire.close()


def test_scram_wrong_password_is_refused_by_real_postgres(password_cluster: int) -> None:
    wire, outcome = _scram_login(password_cluster, "not the password")
    wire.close()
    assert isinstance(outcome, ErrorResponse)
    assert outcome.sqlstate == "28P01"  # invalid_password


def test_md5_login_against_real_postgres(password_cluster: int) -> None:
    wire = _startup(password_cluster, "md5user")
    try:
        request = wire.recv()
        assert isinstance(request, AuthenticationMD5Password)
        wire.send(PasswordMessage.from_password(md5_password("md5user", "md5-pw", request.salt)))
        assert isinstance(wire.recv(), AuthenticationOk)
        assert isinstance(wire.until(ReadyForQuery, ErrorResponse)[-1], ReadyForQuery)
    finally:
        wire.close()


def test_cleartext_login_against_real_postgres(password_cluster: int) -> None:
    wire = _startup(password_cluster, "clearuser")
    try:
        assert isinstance(wire.recv(), AuthenticationCleartextPassword)
        wire.send(PasswordMessage.from_password("clear-pw"))
        assert isinstance(wire.recv(), AuthenticationOk)
        assert isinstance(wire.until(ReadyForQuery, ErrorResponse)[-1], ReadyForQuery)
    finally:
        wire.close()
