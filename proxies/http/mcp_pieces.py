"""A server's messages on one MCP event stream read in sequence: a value split across them.

Owns holding the events of a stream whose texts a client shows one after another — a log
message's text (`notifications/message`, the SDK's `ctx.info`), a progress message
(`notifications/progress`) — while the last of them may go on in the next: each message
is masked apart (mcp.Forward._message), so a card number logged in halves (`card on
file: 4111 1111`, then `1111 1111`; or in the strings of JSON data, `{"line": ...}`) went
whole to a client showing the lines. The held
texts are read together as lines (a newline between, and as one line: bodies'
`_released` does so for a text body's lines) and a value found across them is masked
into the pieces holding it. What is held goes once the texts no longer end in digits
(what a value may go on from), with any event that is not such a message, at the
stream's end, HELD_SECONDS after the first held, or past MAX_HELD_EVENTS or
MAX_HELD_CHARS.

No IO here: the caller encodes nothing itself for a held event, and sends what
`released` and `rest` give, in order.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from portcullis.masking import Masker
from portcullis.tails import tail_start
from proxies.http.bodies import HELD_SECONDS, MAX_HELD_CHARS, MAX_HELD_EVENTS
from proxies.http.mcp_codec import SseEvent
from proxies.postgres.values import masked_lines

# the end of a text a value may go on from on the next line: digits and what parts them
# (a card's groups, an SSN's, an IBAN's after its letters), read by tails.tail_start
_DIGITS_RUN = re.compile(r"[0-9][0-9 ().\-]*")
# the member of each notification a client shows as a line of text
_SHOWN_TEXTS = {"notifications/message": "data", "notifications/progress": "message"}

Place = tuple[Any, ...]


@dataclass
class _Held:
    event: SseEvent
    shown: Any  # the event's message (or batch of them), masked apart
    texts: dict[Place, str]


def shown_texts(shown: Any) -> dict[Place, str]:
    """The texts a client shows as lines in an event's message or batch, by place: a
    log message's data as text, or the strings of its data as JSON (`{"line": "card
    4111 1111"}`: a client shows the JSON, the first MAX_DATA_TEXTS of them)."""
    messages = list(enumerate(shown)) if isinstance(shown, list) else [(None, shown)]
    texts: dict[Place, str] = {}
    for index, message in messages:
        if not isinstance(message, dict):
            continue
        member = _SHOWN_TEXTS.get(message.get("method", ""))
        params = message.get("params")
        if member and isinstance(params, dict):
            place = ("params", member) if index is None else (index, "params", member)
            _strings(params.get(member), place, texts)
    return texts


MAX_DATA_TEXTS = 64


def _strings(value: Any, place: Place, texts: dict[Place, str]) -> None:
    """The strings of `value` (at `place`) into texts, in order, at most MAX_DATA_TEXTS."""
    if len(texts) >= MAX_DATA_TEXTS or len(place) > 32:
        return
    if isinstance(value, str):
        texts[place] = value
    elif isinstance(value, dict):
        for key, child in value.items():
            _strings(child, (*place, key), texts)
    elif isinstance(value, list):
        for n, child in enumerate(value):
            _strings(child, (*place, n), texts)


def encoded(event: SseEvent, shown: Any) -> bytes:
    return event.encode(json.dumps(shown, ensure_ascii=True))


class HeldPieces:
    """One stream's events held while a value may go on across their texts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: list[_Held] = []
        self._clock = clock
        self._since = 0.0  # when the first event held came
        self.counts: Counter[str] = Counter()

    def due(self) -> float | None:
        """Seconds until what is held goes whatever comes (rest), None if nothing is."""
        if not self._held:
            return None
        return max(0.0, self._since + HELD_SECONDS - self._clock())

    def released(
        self, event: SseEvent, shown: Any, masker: Masker | None
    ) -> list[tuple[SseEvent, bytes]]:
        """The events that go once this one (its message masked apart: `shown`) is read."""
        texts = shown_texts(shown)
        if masker is None or not masker.detects or not texts:
            return [*self.rest(), (event, encoded(event, shown))]
        if not self._held:
            self._since = self._clock()
        self._held.append(_Held(event, shown, texts))
        self._spans_masked(masker)
        lines = [text for held in self._held for text in held.texts.values()]
        size = sum(map(len, lines))
        keep = len(self._held)
        if _goes_on(self._held[-1]) and len(self._held) < MAX_HELD_EVENTS and size < MAX_HELD_CHARS:
            keep = self._tail_start()
        out = [(h.event, encoded(h.event, h.shown)) for h in self._held[:keep]]
        self._held = self._held[keep:]
        if keep and self._held:
            self._since = self._clock()
        return out

    def rest(self) -> list[tuple[SseEvent, bytes]]:
        """What is held, to go now."""
        out = [(h.event, encoded(h.event, h.shown)) for h in self._held]
        self._held = []
        return out

    def _tail_start(self) -> int:
        """The first held event whose texts the digits ending the held texts reach into
        (read as lines: a newline between)."""
        keep = len(self._held) - 1
        while keep > 0:
            if not _goes_on(self._held[keep - 1]):
                break
            keep -= 1
        return keep

    def _spans_masked(self, masker: Masker) -> None:
        """The held texts read together (masked_lines): a value none of them holds alone
        masked into the pieces holding it."""
        pieces = [(n, place) for n, held in enumerate(self._held) for place in held.texts]
        texts = [self._held[n].texts[place] for n, place in pieces]
        parts, counts = masked_lines(masker, texts)
        if not counts:
            return
        self.counts.update(counts)
        for (n, place), text in zip(pieces, parts, strict=True):
            held = self._held[n]
            if held.texts[place] != text:
                held.shown = _with(held.shown, place, text)
                held.texts[place] = text


def _goes_on(held: _Held) -> bool:
    """Whether a value may go on from a held event's texts into the next event's: one of
    them ends in digits (its data's strings are each shown, the next event's after)."""
    return any(tail_start(_DIGITS_RUN, text) < len(text) for text in held.texts.values())


def _with(shown: Any, place: Place, text: str) -> Any:
    """A copy of `shown` whose string at `place` is `text`."""
    if not place:
        return text
    key, rest = place[0], place[1:]
    copy: Any = list(shown) if isinstance(shown, list) else dict(shown)
    copy[key] = _with(shown[key], rest, text)
    return copy
