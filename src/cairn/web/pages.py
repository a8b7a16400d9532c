"""Server-rendered pages: login and the live debugger (owned by the UI work)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

from cairn.log.writer import LogWriter
from cairn.storage.base import Storage

__all__ = ["page_routes"]


def page_routes(storage: Storage, writer: LogWriter) -> list[HTTPRouteHandler]:
    return []
