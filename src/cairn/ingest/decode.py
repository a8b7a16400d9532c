"""Request bodies to JSON: Content-Encoding, size limits, and a lenient path for broken batches.

The fast path decodes the whole body with msgspec. When that fails on a batch, a slower splitter cuts
the `batch` array into its items without recursion and decodes each on its own, so one message with
1,000-deep nesting or a number out of range costs only itself, not the good messages beside it.
Lone UTF-16 surrogates (what JavaScript writes for a string cut in the middle of an emoji) are
replaced by U+FFFD rather than failing the message.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cairn.errors import InvalidBody, InvalidEncoding, InvalidJSON, PayloadTooLarge

__all__ = ["ItemError", "Payload", "decode_body", "decompress"]

_json_decode = msgspec.json.decode


@dataclass(slots=True)
class ItemError:
    """A batch item that could not be decoded; `text` is its raw JSON (possibly cut short)."""

    code: str
    message: str
    text: str


@dataclass(slots=True)
class Payload:
    envelope: dict[str, Any]
    items: list[Any] = field(default_factory=list)


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo `Content-Encoding` (identity, gzip, deflate) without ever inflating past `max_bytes`."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
        return body
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise InvalidEncoding(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    return _inflate(body, wbits, name, max_bytes)


def _inflate(body: bytes, wbits: int, name: str, max_bytes: int) -> bytes:
    """Every member of a (possibly multi-member) gzip stream, as RFC 1952 and `gzip` read it."""
    parts: list[bytes] = []
    size = 0
    remaining = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(remaining, max_bytes + 1 - size)
        except zlib.error as exc:
            raise InvalidEncoding(f"body is not valid {name}: {exc}") from None
        size += len(data)
        if size > max_bytes or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body is over the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise InvalidEncoding(f"{name} body is truncated")
        parts.append(data)
        remaining = inflater.unused_data
        if not remaining.strip(b"\x00") or wbits == zlib.MAX_WBITS:
            if remaining.strip(b"\x00"):
                raise InvalidEncoding(f"unexpected bytes after the end of the {name} stream")
            return b"".join(parts)


def decode_body(data: bytes, *, batch: bool) -> Payload:
    """The body as an envelope and its messages. Raises `InvalidJSON`/`InvalidBody` for the body."""
    if not data.strip():
        raise InvalidJSON("request body is empty")
    try:
        document = _json_decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        if batch:
            return _split_batch(data)
        return Payload(envelope={}, items=[_lenient_single(data, exc)])
    if batch:
        return _batch_payload(document)
    if not isinstance(document, dict):
        raise InvalidBody("body must be a JSON object")
    return Payload(envelope=document, items=[document])


def _batch_payload(document: Any) -> Payload:
    if isinstance(document, list):
        return Payload(envelope={}, items=document)
    if not isinstance(document, dict):
        raise InvalidBody('body must be a JSON object with a "batch" array')
    items = document.pop("batch", None)
    if not isinstance(items, list):
        raise InvalidBody('body must have a "batch" array of messages')
    return Payload(envelope=document, items=items)


def _lenient_single(data: bytes, first_error: Exception) -> Any:
    """The one message of a single-message call; nesting or numbers out of range make it an
    `ItemError` (rejected and listed like a batch item), broken JSON fails the request."""
    value = _lenient_loads(data.decode("utf-8", errors="replace"))
    if isinstance(value, ItemError):
        if value.code == "invalid_json":
            raise InvalidJSON(value.message) from first_error
        return value
    if not isinstance(value, dict):
        raise InvalidBody("body must be a JSON object")
    return value


def _lenient_loads(text: str) -> Any:
    """Stdlib JSON (which keeps lone surrogates), repaired; an `ItemError` when it still fails."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        return _repair(value)
    except RecursionError:
        return ItemError("nesting_too_deep", "message is nested too deeply", text[:2000])
    except _NumberOutOfRange:
        return ItemError("invalid_number", "message holds a number out of range", text[:2000])
    except ValueError as exc:
        return ItemError("invalid_json", f"message is not valid JSON: {exc}", text[:2000])


class _NumberOutOfRange(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NumberOutOfRange(name)


def _repair(value: Any) -> Any:
    if isinstance(value, str):
        return _fix_text(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise _NumberOutOfRange(str(value))
    if isinstance(value, dict):
        return {_fix_text(k): _repair(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repair(v) for v in value]
    return value


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _fix_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


# --- the splitter: structure only, no recursion --------------------------------------------------

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRUCTURE = re.compile(r'["\[\]{}]')
_SCALAR = re.compile(r"[^\s,\]}]+")
_SPACE = re.compile(r"\s*")


def _split_batch(data: bytes) -> Payload:
    text = data.decode("utf-8", errors="replace")
    try:
        return _split_envelope(text)
    except (IndexError, ValueError) as exc:
        raise InvalidJSON(f"body is not valid JSON: {exc}") from None


def _skip_space(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    return match.end() if match else i


def _value_end(text: str, i: int) -> int:
    """Index just past the JSON value that starts at `i`."""
    first = text[i]
    if first == '"':
        return _string_end(text, i)
    if first not in "[{":
        match = _SCALAR.match(text, i)
        if not match:
            raise ValueError(f"unexpected character at {i}")
        return match.end()
    depth = 0
    while True:
        match = _STRUCTURE.search(text, i)
        if not match:
            raise ValueError("unterminated array or object")
        i = match.start()
        char = text[i]
        if char == '"':
            i = _string_end(text, i)
            continue
        depth += 1 if char in "[{" else -1
        i += 1
        if depth == 0:
            return i


def _string_end(text: str, i: int) -> int:
    match = _STRING.match(text, i)
    if not match:
        raise ValueError(f"unterminated string at {i}")
    return match.end()


def _split_envelope(text: str) -> Payload:
    i = _skip_space(text, 0)
    if text[i] == "[":
        return Payload(envelope={}, items=_split_items(text, i)[0])
    if text[i] != "{":
        raise InvalidBody('body must be a JSON object with a "batch" array')
    envelope: dict[str, Any] = {}
    items: list[Any] | None = None
    i = _skip_space(text, i + 1)
    while text[i] != "}":
        key_end = _string_end(text, i)
        key = json.loads(text[i:key_end])
        i = _skip_space(text, key_end)
        if text[i] != ":":
            raise ValueError(f"expected ':' at {i}")
        i = _skip_space(text, i + 1)
        if key == "batch" and text[i] == "[":
            items, i = _split_items(text, i)
        else:
            end = _value_end(text, i)
            value = _lenient_loads(text[i:end])
            if isinstance(value, ItemError):
                raise InvalidJSON(f"field {key!r} is not valid JSON: {value.message}")
            envelope[key] = value
            i = end
        i = _skip_space(text, i)
        if text[i] == ",":
            i = _skip_space(text, i + 1)
    if items is None:
        raise InvalidBody('body must have a "batch" array of messages')
    return Payload(envelope=envelope, items=items)


def _split_items(text: str, i: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    i = _skip_space(text, i + 1)
    while text[i] != "]":
        end = _value_end(text, i)
        items.append(_lenient_loads(text[i:end]))
        i = _skip_space(text, end)
        if text[i] == ",":
            i = _skip_space(text, i + 1)
        elif text[i] != "]":
            raise ValueError(f"expected ',' or ']' at {i}")
    return items, i + 1
