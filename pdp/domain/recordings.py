"""Session recordings in the audit store: how events are written, checked and read back.

Owns the record shape of a recording: a proxy's batch of session events (commands with
their verdicts, results, masking counts) becomes ONE hash-chained `session.events`
record, so recording costs one append per batch rather than one per statement. A batch
that arrived as JSON text is checked event by event and stored as that text
(`{"events_json": ..., "count": n}`), so the PDP never re-serializes a busy session's
events; a batch of protobuf events is stored as a list (`{"events": [...]}`). Readers
get the events back flat, in order, each with its session and time, from either shape;
an event with `repeat_us` (the proxy's run of statements decided and answered alike)
comes back as one event per statement, each with its own time and command text.
A statement's masking counts are in its own event's `details.masked` (recordings made
before that carry them as a separate `masking` event after it; readers take both).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pdp.store import AuditRecord, AuditStore
from portcullis.events import (
    MASKED,
    MAX_MASKED_COUNT,
    MAX_MASKED_KEY,
    MAX_MASKED_KEYS,
    MAX_REPEAT,
    TRUNCATED_PREFIX,
    masked_counts_ok,
    truncation_facts,
)
from portcullis.strict_json import RepeatedName, unique_names

EVENTS_KIND = "session.events"

# An event's time is the proxy's word; the PDP keeps its own clock's reading of when the
# batch arrived beside it (`received_us` in the record body, hashed with it) and weighs
# the one against the other. A time this far ahead of the PDP's clock, or below zero, is
# refused (no clock that runs a session says so); ahead by more than CLOCK_SKEW_SECONDS,
# before the session opened or its decision was made, or after the session closed, it is
# marked wherever a recording is read. Held longer than LATE_SECONDS before it arrived (a
# proxy that spooled its events while the PDP was away, a long command recorded when it
# ended) it is labelled late: genuine, and said so.
REFUSED_AHEAD_SECONDS = 300.0
CLOCK_SKEW_SECONDS = 2.0
LATE_SECONDS = 60.0
RECEIVED = "received_us"

# the fields of one event, their types, and the longest text each may hold
_TEXT_LIMITS = {"direction": 32, "type": 32, "decision_id": 64, "verdict": 32}
# what a proxy's event may say it is (pdp.domain.timeline's shape): the PDP's own entries
# (direction pdp: session.open, session.close, approvals) come from its records alone, so
# a proxy's batch naming one ("session closed" mid-session, "approved by bob") is refused
PROXY_DIRECTIONS = frozenset({"", "client", "upstream", "proxy"})
PROXY_EVENT_TYPES = frozenset({"", "command", "response", "io", "masking", "error", "unenforced"})
# the verdicts an event may name: the PDP's four (portcullis.verdict's wire names), or none.
# Any other text let a command the PDP denied be recorded as `Allow` or `approved`, which
# replay showed and neither replay nor `audit verify` weighed (only `allow` and `mask` are)
EVENT_VERDICTS = frozenset({"", "allow", "deny", "mask", "require_approval"})


class MalformedEvents(ValueError):
    """A batch of events that is not what a proxy sends; the message names the field."""


def time_refusal(times: list[float], received: float) -> str:
    """Why a batch's claimed times are refused ("" when they are not): below zero, or
    more than REFUSED_AHEAD_SECONDS ahead of when the PDP received it."""
    for i, when in enumerate(times):
        if when < 0:
            return f"events[{i}].time: {when!r} is before 1970"
        if when > received + REFUSED_AHEAD_SECONDS:
            ahead = when - received
            return (
                f"events[{i}].time: {ahead:.0f}s ahead of the PDP's clock (at most"
                f" {REFUSED_AHEAD_SECONDS:.0f}s is taken)"
            )
    return ""


def received_at(record: AuditRecord) -> float | None:
    """When the PDP received a `session.events` record's batch, by its own clock; None
    for a record written before the PDP kept it."""
    value = record.body.get(RECEIVED)
    return value / 1_000_000 if type(value) is int else None


def unheld(value: Any) -> str:
    """Why a value a proxy sent is not one every reader of a recording holds ("" when it
    is): an integer no double holds (replay, `audit verify` and the export weigh times
    and counts as floats, and float() of 10**400 raised: one batch stopped them for the
    whole store), or text (a key too) holding a lone surrogate, which no UTF-8 writes
    (the export, the console and every JSON output stopped on it). Walked without
    recursion: a batch is as deep as the JSON parser went."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if not _text(item):
                return "holds text with a lone surrogate (\\ud800-\\udfff), which is no text"
        elif kind is int:
            if not _held(item):
                return "holds an integer no double holds"
        elif kind is dict:
            for key in item:
                if type(key) is str and not _text(key):
                    return "holds a name with a lone surrogate (\\ud800-\\udfff), which is no text"
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return ""


TERMINAL_KIND = "ssh.asciicast"  # (pdp.domain.casts.KIND)


def terminal_refusal(details: Any) -> str:
    """Why an event's details are no terminal recording's ("" when they are, or record
    none): a recording's frames are a list (pdp.domain.casts), and a number or `true`
    there stopped every replay of the session."""
    if not isinstance(details, dict) or details.get("kind") != TERMINAL_KIND:
        return ""
    frames = details.get("events", [])
    if type(frames) is not list:
        return "details.events: a terminal recording's frames must be a list"
    return ""


def _text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _held(number: int) -> bool:
    try:
        float(number)
    except OverflowError:
        return False
    return True


# a batch's JSON text that may hold what unheld() names: a run of digits as long as the
# smallest integer no double holds (309), or a surrogate's escape
_MAYBE_UNHELD = re.compile(r"[0-9]{309}|\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(events: Any) -> Any:
    """A batch's events as every reader can hold them (unheld: refused by RecordEvents;
    a record stored before that, or INSERTed by someone else): an integer no double holds
    as its digits (text), a lone surrogate as U+FFFD. Readers of numbers pass over text,
    and what the record holds exactly is its hashed body."""
    if unheld(events) == "":
        return events
    return _made_readable(events)


def _made_readable(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value if _text(value) else _SURROGATE.sub("\ufffd", value)
    if kind is int:
        return value if _held(value) else str(value)
    if kind is dict:
        return {_made_readable(k): _made_readable(v) for k, v in value.items()}
    if kind is list:
        return [_made_readable(v) for v in value]
    return value


def names_a_member_twice(body: dict[str, Any]) -> bool:
    """Whether a stored batch's JSON text names a member twice in one object (recorded
    before RecordEvents refused one, or INSERTed): Python's reader, every reader here,
    keeps the last, other readers of the same record the first."""
    text = body.get("events_json")
    if not isinstance(text, str):
        return False
    try:
        json.loads(text, object_pairs_hook=unique_names)
    except RepeatedName:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def batch_events(body: dict[str, Any]) -> list[Any]:
    """The events of one `session.events` record body, whichever shape it was stored in,
    each repeated event expanded, each as every reader holds it (readable)."""
    if isinstance(body.get("events_json"), str):
        text = body["events_json"]
        try:
            events = json.loads(text)
        except (ValueError, RecursionError):
            return []
        if _MAYBE_UNHELD.search(text) is not None:
            events = readable(events)
    else:
        events = readable(body.get("events", []))
    if not isinstance(events, list):
        return []
    if not any(isinstance(e, dict) and "repeat_us" in e for e in events):
        return events
    return [again for event in events for again in _expanded(event)]


def _expanded(event: Any) -> list[Any]:
    """A run (an event with `repeat_us`): the event, then a copy for each item, its time
    the gap later than the one before, its command the item's own where it has one."""
    if not isinstance(event, dict) or "repeat_us" not in event:
        return [event]
    first = {k: v for k, v in event.items() if k != "repeat_us"}
    items, when = event["repeat_us"], first.get("time")
    if not isinstance(items, list) or not isinstance(when, int | float):
        return [first]
    out = [first]
    micros = round(when * 1_000_000)
    for item in items:
        again = dict(first)
        if isinstance(item, list) and len(item) == 2:
            item, again["command"] = item
        if type(item) is int:
            micros += item
            again["time"] = micros / 1_000_000
            out.append(again)
    return out


def events_of(record: AuditRecord) -> list[dict[str, Any]]:
    return [
        {**event, "session_id": record.session_id}
        for event in batch_events(record.body)
        if isinstance(event, dict)
    ]


# The command and response events the proxies' recorder writes, as a grammar: a batch
# made only of these is well-formed by construction, so it is counted without being
# decoded. Anything else (other event types, escapes in ids, exponents, a batch longer
# than one command may be) goes through the full check. A property test holds that
# whatever this accepts, the full check accepts with the same count. The string pattern
# is the unrolled form (a run of plain characters, then escape + run, repeated):
# unambiguous, so matching is linear; the two event kinds part at their direction.
# (a \\u escape of a surrogate is left to the full check: alone, it is no text)
_JSON_STRING = (
    r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u(?![dD][89a-fA-F])[0-9a-fA-F]{4})'
    r'[^"\\\x00-\x1f]*)*"'
)
_NUMBER = r"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,20})?"
_SCALAR = rf"(?:{_JSON_STRING}|{_NUMBER}|true|false|null)"
_KEY = r'"(?!masked")[A-Za-z_][A-Za-z0-9_]{0,63}"'  # `masked` holds counts, not a scalar
# details.masked (portcullis.events.masked_counts_ok): plain names, whole numbers
_MASKED_KEY = rf'"[A-Za-z_][A-Za-z0-9_:. @-]{{0,{MAX_MASKED_KEY - 1}}}"'
_MASKED_COUNT = rf"(?:0|[1-9][0-9]{{0,{len(str(MAX_MASKED_COUNT)) - 1}}})"
_MASKED_ITEM = f"{_MASKED_KEY}:{_MASKED_COUNT}"
_MASKED = rf'"{MASKED}":\{{(?:{_MASKED_ITEM}(?:,{_MASKED_ITEM}){{0,{MAX_MASKED_KEYS - 1}}})?\}}'
_DETAIL = rf"(?:{_KEY}:{_SCALAR}|{_MASKED})"
_DETAILS = rf'"details":\{{(?:{_DETAIL}(?:,{_DETAIL})*)?\}}'
_GAP = r"[0-9]{1,10}"
_COMMAND_AGAIN = rf"(?:{_GAP}|\[{_GAP},{_JSON_STRING}\])"
_COMMAND_REPEAT = rf',"repeat_us":\[{_COMMAND_AGAIN}(?:,{_COMMAND_AGAIN}){{0,{MAX_REPEAT - 1}}}\]'
_RESPONSE_REPEAT = rf',"repeat_us":\[{_GAP}(?:,{_GAP}){{0,{MAX_REPEAT - 1}}}\]'
_COMMAND_EVENT = (
    r'\{"time":' + _NUMBER + rf"(?:{_COMMAND_REPEAT})?"
    r',"direction":"client","type":"command",'
    rf'"command":{_JSON_STRING},'
    r'"decision_id":"[^"\\\x00-\x1f]{0,64}",'
    r'"verdict":"(?:allow|deny|mask|require_approval)","cached":(?:true|false),'
    rf"{_DETAILS}\}}"
)
_RESPONSE_EVENT = (
    r'\{"time":' + _NUMBER + rf"(?:{_RESPONSE_REPEAT})?"
    r',"direction":"upstream","type":"response",' + _DETAILS + r"\}"
)
_EVENT = rf"(?:{_COMMAND_EVENT}|{_RESPONSE_EVENT})"
_RECORDER_BATCH = re.compile(rf"\[(?:{_EVENT}(?:,{_EVENT})*)?\]")


# where an event opens in a batch of that grammar: a quote inside a JSON string is
# escaped, and a detail named `time` follows `"details":`, so this opens an event only
_EVENT_TIME = re.compile(r'[\[,]\{"time":(' + _NUMBER + ")")


def _recorder_batch_size(text: str, max_events: int, max_command: int) -> int | None:
    """The number of events, when text is a batch of the recorder's command and
    response events."""
    times = _recorder_batch_times(text, max_events, max_command)
    return None if times is None else len(times)


def _recorder_batch_times(text: str, max_events: int, max_command: int) -> list[float] | None:
    """Each event's time, when text is a batch of the recorder's command and response
    events (their number is the batch's count) naming no member twice in one object."""
    if len(text) > max_command or _RECORDER_BATCH.fullmatch(text) is None:
        return None  # (a command is no longer than the text that holds it)
    if _names_a_member_twice(text):
        return None  # (the full check refuses it, naming the problem)
    times = [float(t) for t in _EVENT_TIME.findall(text)]
    return times if len(times) <= max_events else None


# in a batch of the recorder's grammar (a quote inside a JSON string is escaped, so none
# of these starts inside one): a member's name, a details.masked object (flat: names and
# whole numbers), where an event's details open, and where the next event opens
_MEMBER_NAME = re.compile(r'[{,]"([^"\\]*)":')
_COUNT_NAME = re.compile(r'"([^"\\]*)":')
_MASKED_OBJECT = re.compile(r'"' + MASKED + r'":\{([^{}]*)\}')
_DETAILS_OPEN = '"details":{'
_NEXT_EVENT = ',{"time":'


def _names_a_member_twice(text: str) -> bool:
    """Whether a batch the recorder's grammar matched names a member twice in one object.
    The grammar fixes an event's own members (each once, in order, details last) but not
    the names of its details or of their masked counts: `"rows":0,"rows":500` or
    `"masked":{"email":3},"masked":{}` read as the last to Python and as the first to
    other readers (a SIEM's, an auditor's jq of the bundle): one record, two recordings.
    Linear in the text."""
    if f'"{MASKED}":{{' in text:
        for counts in _MASKED_OBJECT.findall(text):
            names = _COUNT_NAME.findall(counts)
            if len(set(names)) != len(names):
                return True
        text = _MASKED_OBJECT.sub(f'"{MASKED}":0', text)
    for event in text.split(_NEXT_EVENT):
        # the details' names: from their `{` to the event's end (details come last)
        names = _MEMBER_NAME.findall(event, event.find(_DETAILS_OPEN) + len(_DETAILS_OPEN) - 1)
        if len(set(names)) != len(names):
            return True
    return False


def checked_batch(text: str, max_events: int, max_command: int) -> int:
    """How many events the JSON text holds, once each is shaped as a proxy's event must be.

    Raises MalformedEvents naming the first bad field (`events_json[3].time`)."""
    fast = _recorder_batch_times(text, max_events, max_command)
    return len(fast) if fast is not None else _fully_checked_batch(text, max_events, max_command)


def bounded_batch(text: str, max_events: int, max_command: int) -> tuple[int, str]:
    """checked_batch, except that a command longer than max_command does not refuse the
    batch (and with it the events around it): it is cut to its first TRUNCATED_PREFIX
    characters and its event says so, with the whole text's size and SHA-256. Returns
    the count and the text to store."""
    count, text, _ = bounded_batch_times(text, max_events, max_command)
    return count, text


def bounded_batch_times(
    text: str, max_events: int, max_command: int
) -> tuple[int, str, list[float]]:
    """bounded_batch, with each event's claimed time (a run's first: its items come
    later by whole microseconds), for the PDP to weigh against its own clock."""
    fast = _recorder_batch_times(text, max_events, max_command)
    if fast is not None:
        return len(fast), text, fast
    try:
        events = json.loads(text, object_pairs_hook=unique_names)
    except (ValueError, RecursionError):
        events = None  # the full check names the problem (a name given twice too)
    if isinstance(events, list) and _bound_commands(events, max_command):
        text = json.dumps(events, separators=(",", ":"), ensure_ascii=False)
    count = _fully_checked_batch(text, max_events, max_command)
    assert isinstance(events, list)  # (the full check refused anything else)
    return count, text, [float(event["time"]) for event in events]


def _bound_commands(events: list[Any], max_command: int) -> bool:
    """Cut every command (a run's too) longer than max_command; whether any was."""
    cut = False
    for event in events:
        if type(event) is not dict:
            continue
        command = event.get("command")
        if type(command) is str and len(command) > max_command:
            details = event.get("details")
            if type(details) is not dict:
                details = event["details"] = {}
            details.update(truncation_facts(command))
            event["command"] = command[:TRUNCATED_PREFIX]
            cut = True
        items = event.get("repeat_us")
        if type(items) is list:
            for item in items:
                long = type(item) is list and len(item) == 2 and type(item[1]) is str
                if long and len(item[1]) > max_command:
                    item[1] = item[1][:TRUNCATED_PREFIX]
                    if type(event.get("details")) is dict:
                        event["details"]["repeat_command_truncated"] = True
                    cut = True
    return cut


def _fully_checked_batch(text: str, max_events: int, max_command: int) -> int:
    constants = False
    try:
        try:
            events = json.loads(text, parse_constant=_no_constant)
        except _Constant:  # read again, taking them, for the fields' checks to name where
            events, constants = json.loads(text), True
    except ValueError as exc:
        raise MalformedEvents(f"events_json: not JSON ({exc})") from None
    except RecursionError:  # deeper than the parser goes: no proxy sends it
        raise MalformedEvents("events_json: nested too deep") from None
    if not isinstance(events, list):
        raise MalformedEvents("events_json: must be a JSON array of events")
    if len(events) > max_events:
        raise MalformedEvents(f"events_json: more than {max_events} events in one call")
    for i, event in enumerate(events):
        if type(event) is not dict:
            raise MalformedEvents(f"events_json[{i}]: must be an object")
        if not event.keys() <= _EVENT_FIELDS:
            unknown = sorted(event.keys() - _EVENT_FIELDS)[0]
            raise MalformedEvents(f"events_json[{i}]: unknown field {unknown!r}")
        when = event.get("time")
        if not (type(when) is int or (type(when) is float and math.isfinite(when))):
            raise MalformedEvents(f"events_json[{i}].time: must be a number of seconds")
        for name, limit in _TEXT_LIMITS_ITEMS:
            value = event.get(name, "")
            if type(value) is not str or len(value) > limit:
                raise MalformedEvents(f"events_json[{i}].{name}: must be text of at most {limit}")
        why = kind_refusal(
            event.get("direction", ""), event.get("type", ""), event.get("verdict", "")
        )
        if why:
            raise MalformedEvents(f"events_json[{i}].{why}")
        command = event.get("command", "")
        if type(command) is not str or len(command) > max_command:
            raise MalformedEvents(
                f"events_json[{i}].command: must be text of at most {max_command}"
            )
        if type(event.get("cached", False)) is not bool:
            raise MalformedEvents(f"events_json[{i}].cached: must be true or false")
        details = event.get("details", _NO_DETAILS)
        if type(details) is not dict:
            raise MalformedEvents(f"events_json[{i}].details: must be an object")
        if MASKED in details and not masked_counts_ok(details[MASKED]):
            raise MalformedEvents(
                f"events_json[{i}].details.masked: must map at most {MAX_MASKED_KEYS} names"
                f" of at most {MAX_MASKED_KEY} characters to whole numbers from 0 to"
                f" {MAX_MASKED_COUNT}"
            )
        why = unheld(event) or terminal_refusal(details)
        if why:
            raise MalformedEvents(f"events_json[{i}]: {why}")
        if "repeat_us" in event and not _repeats(
            event["repeat_us"], max_command if "command" in event else -1
        ):
            raise MalformedEvents(
                f"events_json[{i}].repeat_us: must be at most {MAX_REPEAT} gaps, each a whole"
                " number of microseconds below 10**10, or for a command [gap, command text]"
            )
    try:
        json.loads(text, object_pairs_hook=unique_names)
    except RepeatedName:
        # Python's reader keeps the last of `"verdict":"allow",...,"verdict":"deny"`, other
        # readers of the stored text (a SIEM's, an auditor's own tools) the first: a batch
        # is one recording, read one way
        raise MalformedEvents("events_json: an object names a member twice") from None
    if constants:
        for i, event in enumerate(events):
            try:
                json.dumps(event, allow_nan=False)
            except ValueError:
                raise MalformedEvents(
                    f"events_json[{i}]: holds NaN or an infinity, which JSON has not"
                ) from None
    return len(events)


def kind_refusal(direction: Any, kind: Any, verdict: Any = "") -> str:
    """Why an event's direction, type and verdict are none a proxy records ("" when they
    are)."""
    if direction not in PROXY_DIRECTIONS:
        return f"direction: {str(direction)[:32]!r} is not one a proxy records"
    if kind not in PROXY_EVENT_TYPES:
        return f"type: {str(kind)[:32]!r} is not one a proxy records"
    if verdict not in EVENT_VERDICTS:
        return f"verdict: {str(verdict)[:32]!r} is not one the PDP gives"
    return ""


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """NaN and the infinities are no JSON (RFC 8259 §6), though Python's reader takes them:
    a detail holding one (`"rows": Infinity`) stopped every reader that counts with it
    (replay, the console's session page, `audit verify`) for the whole session."""
    raise _Constant(name)


def _repeats(items: Any, max_command: int) -> bool:
    """A run's items: gaps, and for a command (max_command >= 0) [gap, text] pairs."""
    if type(items) is not list or len(items) > MAX_REPEAT:
        return False
    for item in items:
        if type(item) is list and len(item) == 2 and max_command >= 0:
            item, text = item
            if type(text) is not str or len(text) > max_command:
                return False
        if type(item) is not int or not 0 <= item < 10**10:
            return False
    return True


_EVENT_FIELDS = frozenset({"time", "command", "cached", "details", "repeat_us", *_TEXT_LIMITS})
_TEXT_LIMITS_ITEMS = tuple(_TEXT_LIMITS.items())
_NO_DETAILS: dict[str, Any] = {}


async def session_events(store: AuditStore, session_id: str | None = None) -> list[dict[str, Any]]:
    """Every recorded event (of one session, or of all), in the order they happened."""
    records = await store.query(kind=EVENTS_KIND, session_id=session_id)
    events = [event for record in records for event in events_of(record)]
    events.sort(key=_time_key)
    return events


def _time_key(event: dict[str, Any]) -> float:
    """An event's place in time: its time, or 0 for one that is no number (no proxy's)."""
    when = event.get("time")
    if type(when) is float or (type(when) is int and _held(when)):
        return float(when)
    return 0.0
