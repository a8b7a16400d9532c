"""A catalogue of hostile batch items: each bad one with the rejection code it must get, each odd
but valid one with what must be stored. Items are raw JSON bytes, because some of them (1e400,
lone surrogates, invalid UTF-8, 1,000-deep nesting) cannot be written by `json.dumps`.

`FAST` items decode with msgspec; a batch holding any `LENIENT` item takes the collector's slower
item-by-item decoder, so the two lists together cover both paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bad", "Good", "assert_kept", "assert_listed", "batch_body", "catalogue", "interleave"]


@dataclass(frozen=True)
class Bad:
    name: str
    raw: bytes
    code: str


@dataclass(frozen=True)
class Good:
    name: str
    raw: bytes
    message_id: str
    stored: dict[str, Any] = field(default_factory=dict)


def _j(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u-1", "event": "Item Viewed", **fields}


def _bad_fast() -> list[Bad]:
    items: list[tuple[str, Any, str]] = [
        ("no ids", {"type": "track", "event": "No Ids"}, "missing_id"),
        ("blank ids", _track(userId="  ", anonymousId=""), "missing_id"),
        ("null ids", _track(userId=None, anonymousId=None), "missing_id"),
        ("track without event", {"type": "track", "userId": "u"}, "missing_event"),
        ("track with blank event", _track(event="   "), "missing_event"),
        ("group without groupId", {"type": "group", "userId": "u"}, "missing_group_id"),
        ("alias without previousId", {"type": "alias", "userId": "u"}, "missing_alias_ids"),
        ("alias without userId", {"type": "alias", "anonymousId": "a", "previousId": "p"},
         "missing_alias_ids"),
        ("event as number", _track(event=42), "invalid_event"),
        ("event with NUL", _track(event="Bad\u0000Event"), "invalid_event"),
        ("properties as list", _track(properties=[1, 2]), "invalid_field"),
        ("traits as string", {"type": "identify", "userId": "u", "traits": "x"}, "invalid_field"),
        ("context as number", _track(context=5), "invalid_field"),
        ("page name as number", {"type": "page", "userId": "u", "name": 5}, "invalid_field"),
        ("NUL in userId", _track(userId="a\u0000b"), "invalid_id"),
        ("NUL in anonymousId", _track(userId=None, anonymousId="\u0000"), "invalid_id"),
        ("userId as bool", _track(userId=True), "invalid_id"),
        ("userId as object", _track(userId={"id": 1}), "invalid_id"),
        ("NUL in messageId", _track(messageId="m\u0000"), "invalid_message_id"),
        ("messageId of 101 chars", _track(messageId="m" * 101), "invalid_message_id"),
        ("messageId as list", _track(messageId=["m"]), "invalid_message_id"),
        ("timestamp not ISO", _track(timestamp="yesterday"), "invalid_timestamp"),
        ("timestamp as number", _track(timestamp=1_700_000_000_000), "invalid_timestamp"),
        ("unknown type", {"type": "launch", "userId": "u"}, "invalid_type"),
        ("NUL in type", {"type": "track\u0000" * 30, "userId": "u"}, "invalid_type"),
        ("no type", {"userId": "u", "event": "e"}, "missing_type"),
        ("a number", 5, "invalid_message"),
        ("a string", "track", "invalid_message"),
        ("a list", [], "invalid_message"),
        ("null", None, "invalid_message"),
        ("over 32 KB", _track(properties={"blob": "x" * 40_000}), "message_too_large"),
    ]  # fmt: skip
    return [Bad(name, _j(item), code) for name, item, code in items]


def _bad_lenient() -> list[Bad]:
    deep = "[" * 1000 + "]" * 1000
    return [
        Bad("1e400", b'{"type":"track","userId":"u","event":"e","properties":{"n":1e400}}',
            "invalid_number"),
        Bad("-1e400", b'{"type":"track","userId":"u","event":"e","properties":{"n":-1e400}}',
            "invalid_number"),
        Bad("1,000-deep nesting",
            b'{"type":"track","userId":"u","event":"e","properties":{"x":%s}}' % deep.encode(),
            "nesting_too_deep"),
    ]  # fmt: skip


def _good(name: str, message_id: str, item: dict[str, Any], **stored: Any) -> Good:
    return Good(name, _j({**item, "messageId": message_id}), message_id, stored)


def _good_fast(tag: str) -> list[Good]:
    odd = "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u05e9\u05dc\u05d5\u05dd \u202e e\u0301"
    return [
        _good("odd unicode", f"{tag}-unicode", _track(event=f"Viewed {odd}",
              properties={odd: odd, "rtl": "\u0645\u0631\u062d\u0628\u0627"}),
              event=f"Viewed {odd}", properties={odd: odd, "rtl": "\u0645\u0631\u062d\u0628\u0627"}),
        _good("huge integer", f"{tag}-bigint", _track(properties={"n": 123456789012345678901234567890}),
              properties={"n": 123456789012345678901234567890}),
        _good("1e308", f"{tag}-1e308", _track(properties={"n": 1e308, "tiny": 5e-324}),
              properties={"n": 1e308, "tiny": 5e-324}),
        _good("NUL in a property value", f"{tag}-nul-prop", _track(properties={"s": "a\u0000b"}),
              properties={"s": "a\u0000b"}),
        _good("numeric ids", f"{tag}-numeric", {"type": "group", "userId": 42, "anonymousId": 3.0,
              "groupId": 12345678901234567890123}, userId="42", anonymousId="3",
              groupId="12345678901234567890123"),
        _good("nulls dropped", f"{tag}-nulls", _track(anonymousId=None, properties=None,
              context=None, timestamp=None), userId="u-1"),
        _good("messageId of 100 chars", f"{tag}-" + "m" * (99 - len(tag)), _track()),
        _good("type in capitals", f"{tag}-caps", _track(type=" TRACK "), type="track"),
        _good("200-deep nesting", f"{tag}-deep200", _track(properties={"x": _nest(200)}),
              properties={"x": _nest(200)}),
    ]  # fmt: skip


def _nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _good_lenient(tag: str) -> list[Good]:
    return [
        Good("lone high surrogate", b'{"type":"track","userId":"u","event":"caf\\ud83d",'
             b'"messageId":"%s-surrogate"}' % tag.encode(), f"{tag}-surrogate",
             {"event": "caf\ufffd"}),
        Good("lone surrogates in keys and values", b'{"type":"identify","userId":"u",'
             b'"traits":{"\\udc00k":"a\\ud800b"},"messageId":"%s-surrogate-2"}' % tag.encode(),
             f"{tag}-surrogate-2", {"traits": {"\ufffdk": "a\ufffdb"}}),
        Good("invalid UTF-8", b'{"type":"track","userId":"u","event":"bad \xff\xfe bytes",'
             b'"messageId":"%s-utf8"}' % tag.encode(), f"{tag}-utf8",
             {"event": "bad \ufffd\ufffd bytes"}),
    ]  # fmt: skip


def catalogue(tag: str, *, lenient: bool) -> tuple[list[Good], list[Bad]]:
    """Good and bad items; with `lenient`, also those msgspec cannot decode."""
    goods, bads = _good_fast(tag), _bad_fast()
    if lenient:
        goods += _good_lenient(tag)
        bads += _bad_lenient()
    return goods, bads


def batch_body(items: list[bytes], write_key: str, **envelope: Any) -> bytes:
    """A batch request body around raw item bytes."""
    head = json.dumps({"writeKey": write_key, **envelope})[:-1].encode()
    return head + b', "batch": [' + b", ".join(items) + b"]}"


def interleave(goods: list[Good], bads: list[Bad]) -> list[Good | Bad]:
    """Good and bad items alternating, so every rejection index is checked against a neighbour."""
    items: list[Good | Bad] = []
    for n in range(max(len(goods), len(bads))):
        items += goods[n : n + 1] + bads[n : n + 1]
    return items


def assert_kept(
    items: list[Good | Bad], answer: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """The answer names every bad item by index and code; exactly the good ones are stored, as
    the catalogue says."""
    want = [(i, item.code, item.name) for i, item in enumerate(items) if isinstance(item, Bad)]
    named = {i: name for i, _, name in want}
    got = [(r["index"], r["code"], named.get(r["index"], "?")) for r in answer["rejected"]]
    assert got == want
    assert answer["success"] is True
    stored = {event["messageId"]: event for event in events}
    assert len(stored) == len(events), "an event was stored twice"
    goods = [item for item in items if isinstance(item, Good)]
    assert set(stored) == {good.message_id for good in goods}
    for good in goods:
        for key, value in good.stored.items():
            assert stored[good.message_id].get(key) == value, (good.name, key)


def assert_listed(items: list[Good | Bad], rejected: list[dict[str, Any]]) -> None:
    """Every bad item is in the rejected list, with its index and reason, for operators."""
    want = [(i, item.code) for i, item in enumerate(items) if isinstance(item, Bad)]
    listed = sorted((int(r["message"].split(":")[0].split()[1]), r["code"]) for r in rejected)
    assert listed == want
    assert all(r["message"].split(": ", 1)[1] for r in rejected)
