"""Build the application from settings: the only place that wires parts together."""

from __future__ import annotations

import logging
import threading
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
from cairn.ingest.timestamps import now_ms
from cairn.log.wakeup import PipelineLink, PipelineRunner
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

__all__ = [
    "CairnApp",
    "PipelineWorker",
    "Runtime",
    "build_app",
    "open_pipeline_worker",
    "open_runtime",
    "run_pipeline_process",
]

log = logging.getLogger(__name__)


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
    its runner thread, unless `pipeline` is off because `cairn worker` processes run it, or
    `remote`: the pipeline process of `cairn serve --workers N` runs it)."""

    settings: Settings
    storage: Storage
    writer: LogWriter
    collector: Collector
    pipeline: Pipeline
    runner: Runner | None
    automations: AutomationEngine | None = None
    remote: PipelineRunner | None = None

    @property
    def pipeline_runner(self) -> PipelineRunner | None:
        """What the routes wake and ask whether it runs: the runner here, or the remote one."""
        return self.runner if self.runner is not None else self.remote

    def start(self) -> None:
        self.writer.start()
        if self.pipeline_runner is not None:
            self.writer.on_commit.append(self.pipeline_runner.wake)
        if self.runner is not None:
            self.runner.start()

    def close(self) -> None:
        self.writer.stop()
        if self.runner is not None:
            self.runner.stop()
        if self.automations is not None:
            self.automations.close()
        self.storage.close()


def open_runtime(settings: Settings, link: PipelineLink | None = None) -> Runtime:
    """A server process's parts. With `link` (an HTTP worker of `cairn serve --workers N`) the
    server's pipeline process runs the pipeline; without, this process does (if `pipeline`)."""
    storage = _sql_storage(settings)
    writer = LogWriter(
        storage, max_pending=settings.max_pending_events, max_rows=settings.group_commit_rows
    )
    sources = SourceCache(storage, ttl=settings.source_cache_seconds)
    pipeline = Pipeline.from_settings(storage, settings)
    collector = Collector(writer, sources, settings)
    runtime = Runtime(settings, storage, writer, collector, pipeline, None)
    if settings.pipeline and link is not None:
        runtime.remote = _PipelineProcess(pipeline, link)
    elif settings.pipeline:
        runtime.runner, runtime.automations = _runner(settings, pipeline)
    return runtime


def _sql_storage(settings: Settings) -> SQLStorage:
    storage = storage_for(settings)
    assert isinstance(storage, SQLStorage)
    return storage


def _runner(
    settings: Settings,
    pipeline: Pipeline,
    *,
    lease_seconds: float = 10.0,
    holder: str | None = None,
) -> tuple[Runner, AutomationEngine]:
    """The pipeline's runner with its followers (live segments, automations) in its thread."""
    engine = SegmentEngine(pipeline.store)
    automations = AutomationEngine.from_settings(pipeline.store, settings)
    runner = Runner(
        pipeline, lease_seconds=lease_seconds, holder=holder, followers=[engine, automations]
    )
    automations.set_wake(runner.wake)
    return runner, automations


class _PipelineProcess:
    """The pipeline as an HTTP worker of `cairn serve --workers N` sees it: woken through the
    link's pipe, running while the server's pipeline process holds the lease."""

    def __init__(self, pipeline: Pipeline, link: PipelineLink) -> None:
        self.pipeline = pipeline
        self.link = link

    def wake(self) -> None:
        self.link.wake()

    @property
    def holding(self) -> bool:
        cursor = self.pipeline.store.cursor(self.pipeline.name)
        return cursor.holder == self.link.holder and cursor.lease_until_ms > now_ms()


@dataclass
class PipelineWorker:
    """The pipeline alone in a process: `cairn worker`, and `cairn serve`'s pipeline process."""

    storage: SQLStorage
    runner: Runner
    automations: AutomationEngine

    def run(self, stop: threading.Event) -> None:
        """Follow the log until `stop` is set; then finish the batch and release the lease.
        The process gets the runtime of `cairn serve`'s (`tune_runtime`): above all the GIL's
        0.5 ms switch interval, which the pipeline's writer thread waits for after every
        statement while the runner thread works out the next batch."""
        from cairn.server import tune_runtime

        tune_runtime()
        self.runner.start()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            self.runner.stop()
            self.automations.close()
            self.storage.close()


def open_pipeline_worker(
    settings: Settings, *, lease_seconds: float = 10.0, holder: str | None = None
) -> PipelineWorker:
    storage = _sql_storage(settings)
    pipeline = Pipeline.from_settings(storage, settings)
    runner, automations = _runner(settings, pipeline, lease_seconds=lease_seconds, holder=holder)
    return PipelineWorker(storage, runner, automations)


def run_pipeline_process(settings: Settings, link: PipelineLink, stop: threading.Event) -> int:
    """The pipeline process of `cairn serve --workers N`, until `stop`: `cairn worker`'s loop,
    woken by the HTTP workers through `link` (their commits, and routes that make new work)."""
    worker = open_pipeline_worker(settings, holder=link.holder)
    link.listen(worker.runner.wake)
    worker.run(stop)
    return 0


def build_app(
    settings: Settings, runtime: Runtime | None = None, link: PipelineLink | None = None
) -> Litestar:
    """The ASGI application. Starts the log writer on startup and drains it on shutdown. `link`
    goes to `open_runtime` when no `runtime` is given."""
    rt = runtime or open_runtime(settings, link)
    runner = rt.pipeline_runner

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
            people_router(rt.storage, rt.pipeline, runner),
            finder_router(rt.pipeline.storage, runner),
            plans_router(rt.storage, rt.pipeline, runner),
            automations_router(rt.pipeline.storage, runner.wake if runner else None),
            metrics_route(rt.storage, rt.pipeline),
            *page_routes(rt.storage, rt.writer),
            *people_page_routes(rt.pipeline, runner),
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
