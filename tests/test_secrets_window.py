"""The secret scanner's `shown` reading decides from the chunk and the few bytes before it
whether its window holds escape, markup or a stretch of the shown forms' bytes (what began
further back remembered by where it began): the same answer as searching the whole window
each time, which is what these tests hold it to, chunk by chunk, on random streams."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from proxies.runtime.secrets_scan import SecretScanner, shown

SECRET = "bench-secret-password"


def _whole_window(scanner: SecretScanner, window: bytes) -> bool:
    """Whether the whole window is read by `shown` (the search before the remembered
    positions): escape or markup in it, or not ASCII with a stretch of the forms' bytes."""
    plan = scanner._plan
    marked = b"&#" in window or b"\\" in window or b"<" in window
    return marked or (
        not window.isascii() and window.translate(plan.shown_marks).find(plan.shown_stretch) != -1
    )


def _pieces(rng: random.Random) -> list[bytes]:
    secret = SECRET.encode()
    return [
        b"&#", b"&", b"#", b"\\", b"<", b"x", b"\0\0\0\4", b"\xff\xff", b"\xc3\xa9",
        secret[:7], secret[7:], secret.upper(), b"&#98;", b"\\u0062", b"<b>",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30))),
        b"s" * rng.randrange(1, 40), b"\x80" * rng.randrange(1, 40), b"a" * 400,
    ]  # fmt: skip


class _Reads(tuple[bytes, ...]):
    """The plan's shown forms, counting the windows searched for them (each window the
    scanner reads as `shown` reads it)."""

    searches = 0

    def __iter__(self) -> Iterator[bytes]:
        type(self).searches += 1
        return super().__iter__()


def _counted(scanner: SecretScanner, monkeypatch: pytest.MonkeyPatch) -> type[_Reads]:
    reads = type("Reads", (_Reads,), {})
    monkeypatch.setattr(scanner._plan, "shown", reads(scanner._plan.shown))
    return reads


@pytest.mark.parametrize("seed", range(40))
def test_the_window_is_read_as_the_whole_window_search_reads_it(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    scanner = SecretScanner([SECRET])
    reads = _counted(scanner, monkeypatch)
    plan = scanner._plan
    for _ in range(300):
        chunk = b"".join(rng.choice(_pieces(rng)) for _ in range(rng.randrange(0, 6)))
        if not chunk:
            continue
        window = scanner._shown_tail + chunk
        expected = _whole_window(scanner, window)
        was, before = scanner.findings, reads.searches
        scanner._read_shown(chunk)
        assert (reads.searches > before) == expected, (seed, window)
        if "shown" in scanner.findings:
            assert "shown" not in was
            text = window.decode("utf-8", "ignore")
            assert any(form in shown(text).encode() for form in plan.shown)
            return


def test_an_escaped_secret_split_across_many_small_chunks_is_seen() -> None:
    stream = b"\0\xff" + "".join(f"&#{ord(c)};" for c in SECRET).encode() + b"\xff"
    scanner = SecretScanner([SECRET])
    for at in range(len(stream)):
        scanner.feed(stream[at : at + 1])
    assert "shown" in scanner.findings


def test_a_stretch_long_before_the_escape_still_counts_only_inside_the_window() -> None:
    # a stretch of the forms' bytes far back, then plain bytes past the window: never read
    scanner = SecretScanner([SECRET])
    scanner.feed(b"\xff" + b"\x80" * 40)
    for _ in range(40):
        scanner.feed(b"\0" * 50)
    assert scanner._stretch_back > len(scanner._shown_tail)
    assert scanner.findings == []


@pytest.mark.parametrize("mark", [b"<", b"\\", b"&#"])
@pytest.mark.parametrize("stretch", [False, True])
def test_what_begins_at_the_windows_first_byte_is_in_it_and_then_gone(
    mark: bytes, stretch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanner = SecretScanner([SECRET])
    reads = _counted(scanner, monkeypatch)
    plan = scanner._plan
    first = b"\x80" * len(plan.shown_stretch) if stretch else mark
    scanner.feed(first + b"\0" * (plan.shown_len - len(first)))
    assert len(scanner._shown_tail) == plan.shown_len
    counted = reads.searches
    scanner.feed(b"\xff")  # the window: the tail (beginning with it) and this byte
    assert reads.searches == counted + 1
    scanner.feed(b"\xff")  # its first byte has left the window
    assert reads.searches == counted + 1


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_secret_split_across_chunks_of_any_buffer_type_is_seen(kind: type) -> None:
    stream = b"D\0\0\0\x20\0\x01\xff\xff" + SECRET.encode() + b"C\0"
    scanner = SecretScanner([SECRET])
    middle = 9 + len(SECRET) // 2
    assert not scanner.feed(kind(stream[:middle]))
    assert scanner.feed(kind(stream[middle:]))
    assert "raw" in scanner.findings
