"""Length-prefixed JSON frames between the PDP and its evaluation workers (no IO here)."""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
# A frame whose body starts with this byte is an evaluation: RAW_EVAL + path + b"\n" +
# input JSON; its answer is a JSON header line and the evaluator's own JSON envelope.
RAW_EVAL = b"\x01"


def encode_eval(path: str, input_json: bytes) -> bytes:
    head = RAW_EVAL + path.encode() + b"\n"
    length = len(head) + len(input_json)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    # one join: the input (about 2 KB on every evaluation) copied once, not twice
    return b"".join((HEADER.pack(length), head, input_json))


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ValueError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def decode_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return length


def decode(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("frame is not a JSON object")
    return message
