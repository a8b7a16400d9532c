"""Build the application from settings: the only place that wires parts together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.response import Redirect

from cairn import __version__
from cairn.automations.engine import AutomationEngine
from cairn.finder.segments import SegmentEngine
from cairn.ingest.collector import Collector
from cairn.log.writer import LogWriter
from cairn.pipeline.runner import Pipeline, Runner
from cairn.settings import Settings
from cairn.storage.base import Storage, storage_for
from cairn.storage.sql import SQLStorage
from cairn.web.api import api_router
from cairn.web.automations import automations_router
from cairn.web.collector import CollectorEndpoint, collector_routes
from cairn.web.cors import CollectorCORS, add_cors_headers
from cairn.web.errors import EXCEPTION_HANDLERS
from cairn.web.finder import finder_router
from cairn.web.pages import page_routes
from cairn.web.people import metrics_route, people_router
from cairn.web.people_pages import people_page_routes
from cairn.web.plans import plans_router
from cairn.workspaces import SourceCache

__all__ = ["CairnApp", "Runtime", "build_app", "open_runtime"]

log = logging.getLogger(__name__)

_OWN_LOG_POLL_SECONDS = 0.2
_SHARED_LOG_POLL_SECONDS = 0.05


def _workers(settings: Settings) -> int:
    from cairn.server import default_workers

    return settings.workers or default_workers()


class CairnApp(Litestar):
    """Litestar, with the collector's message POSTs answered before it routes them
    (cairn.web.collector.CollectorEndpoint: measured 4 to 6 µs of server CPU less per event)."""

    collector_endpoint: CollectorEndpoint | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = self.collector_endpoint
        if endpoint is not None and endpoint.handles(scope):
            await endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@dataclass
class Runtime:
    """The parts of a running Cairn: storage, the log writer, the collector, the pipeline (and
    its runner thread, unless `pipeline` is off because `cairn worker` processes run it)."""

    settings: Settings
    storage: Storage
    writer: LogWriter
    collector: Collector
    pipeline: Pipeline
    runner: Runner | None
    automations: AutomationEngine | None = None

    def start(self) -> None:
        self.writer.start()
        if self.runner is not None:
            self.writer.on_commit.append(self.runner.wake)
            self.runner.start()

    def close(self) -> None:
        self.writer.stop()
        if self.runner is not None:
            self.runner.stop()
        if self.automations is not None:
            self.automations.close()
        self.storage.close()


def open_runtime(settings: Settings) -> Runtime:
    storage = storage_for(settings)
    assert isinstance(storage, SQLStorage)
    writer = LogWriter(
        storage, max_pending=settings.max_pending_events, max_rows=settings.group_commit_rows
    )
    sources = SourceCache(storage, ttl=settings.source_cache_seconds)
    pipeline = Pipeline.from_settings(storage, settings)
    engine = SegmentEngine(pipeline.store)
    automations = (
        AutomationEngine.from_settings(pipeline.store, settings) if settings.pipeline else None
    )
    # With several server processes the log writer of this one sees only its own commits: the
    # runner then also polls the log, often enough that other workers' events wait no longer.
    idle = _SHARED_LOG_POLL_SECONDS if _workers(settings) > 1 else _OWN_LOG_POLL_SECONDS
    runner = (
        Runner(pipeline, idle_seconds=idle, followers=[engine, automations])
        if automations
        else None
    )
    if runner is not None and automations is not None:
        automations.set_wake(runner.wake)
    collector = Collector(writer, sources, settings)
    return Runtime(settings, storage, writer, collector, pipeline, runner, automations)


def build_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    """The ASGI application. Starts the log writer on startup and drains it on shutdown."""
    rt = runtime or open_runtime(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        rt.start()
        try:
            yield
        finally:
            rt.close()

    @get("/health", include_in_schema=False)
    async def health() -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type=MediaType.JSON)

    @get("/docs", include_in_schema=False)
    async def docs() -> Redirect:
        return Redirect("/schema")

    app = CairnApp(
        route_handlers=[
            *collector_routes(rt.collector, settings),
            api_router(rt.storage, rt.writer),
            people_router(rt.storage, rt.pipeline, rt.runner),
            finder_router(rt.pipeline.storage, rt.runner),
            plans_router(rt.storage, rt.pipeline, rt.runner),
            automations_router(rt.pipeline.storage, rt.runner.wake if rt.runner else None),
            metrics_route(rt.storage, rt.pipeline),
            *page_routes(rt.storage, rt.writer),
            *people_page_routes(rt.pipeline, rt.runner),
            health,
            docs,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[CollectorCORS],
        before_send=[add_cors_headers],
        openapi_config=OpenAPIConfig(title="Cairn", version=__version__, path="/schema"),
        request_max_body_size=settings.max_request_bytes * 2,
        debug=False,
    )
    app.collector_endpoint = CollectorEndpoint(rt.collector, settings)
    return app
