"""The customer's web site in the browser tests: files and pages on a loopback port of its own.

Cairn runs on another port, so every request the page makes to Cairn is cross-origin, as it is
on a real site: the browser applies CORS exactly as it would in production.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["CAMPAIGN", "LOOPBACK", "SEARCH", "serve_site"]

LOOPBACK = "127.0.0.1"

# A landing from a newsletter: the query string the tests open pages with, and the
# `context.campaign` a browser library must make of it (PROTOCOL.md, `context` fields).
SEARCH = (
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&utm_term=trail%20boots"
    "&utm_content=hero"
)
CAMPAIGN = {
    "source": "newsletter",
    "medium": "email",
    "name": "spring_sale",
    "term": "trail boots",
    "content": "hero",
}


def _handler(directory: Path, pages: Mapping[str, str]) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        """Files from `directory`; a path under one of `pages`' prefixes gets that page's HTML."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            html = next((page for prefix, page in pages.items() if path.startswith(prefix)), None)
            if html is None:
                super().do_GET()
                return
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve_site(directory: Path, pages: Mapping[str, str] | None = None) -> Iterator[str]:
    """`directory` over HTTP on a free loopback port, plus `pages` ({path prefix: HTML}); yields
    the site's origin."""
    httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler(directory, pages or {}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
