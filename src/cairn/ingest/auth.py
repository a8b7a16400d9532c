"""Where a write key can come from: HTTP Basic (with or without the colon), `X-Write-Key`, the body."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

__all__ = ["write_key_from_body", "write_key_from_headers"]


def write_key_from_headers(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key = decoded.split(":", 1)[0]
        if key:
            return key
    header_key = headers.get("x-write-key", "").strip()
    return header_key or None


def write_key_from_body(envelope: Mapping[str, Any], items: list[Any]) -> str | None:
    key = envelope.get("writeKey")
    if isinstance(key, str) and key:
        return key
    for item in items[:1]:
        if isinstance(item, dict):
            key = item.get("writeKey")
            if isinstance(key, str) and key:
                return key
    return None
