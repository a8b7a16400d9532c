"""Automations over a real pipeline on every backend, with a real HTTP receiver on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cairn.automations import AutomationEngine, Automations, Deliveries
from cairn.storage.sql import SQLStorage
from tests.storage.conftest import OpenStorage, open_storage, storage  # noqa: F401
from tests.support.pipeline import Log
from tests.support.receiver import Receiver, receiving


@dataclass
class Harness:
    log: Log
    engine: AutomationEngine
    receiver: Receiver

    @property
    def automations(self) -> Automations:
        return self.engine.automations

    @property
    def workspace_id(self) -> int:
        assert self.log.workspace is not None
        return self.log.workspace.id

    def create(self, definition: dict[str, Any]) -> int:
        return self.automations.create(self.workspace_id, definition).id

    def turn(self) -> None:
        """One pass of the pipeline's thread: the batch, then the engine."""
        self.log.run()
        while self.engine.step():
            self.log.run()

    def until(self, check: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.turn()
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the automation")
            time.sleep(0.02)

    def runs(self, automation_id: int) -> list[tuple[Any, ...]]:
        return [
            tuple(row)
            for row in self.log.store.rows(
                "SELECT id, person_id, state, step, error FROM automation_runs "
                "WHERE automation_id = ? ORDER BY id",
                (automation_id,),
            )
        ]

    def states(self, automation_id: int) -> list[str]:
        return [row[2] for row in self.runs(automation_id)]

    def steps(self, run_id: int) -> list[tuple[str, str]]:
        return [
            (row[0], row[1])
            for row in self.log.store.rows(
                "SELECT step, outcome FROM automation_run_steps WHERE run_id = ? ORDER BY id",
                (run_id,),
            )
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


def make_engine(storage: SQLStorage, **options: Any) -> AutomationEngine:  # noqa: F811
    from cairn.storage.people import PeopleStore

    store = PeopleStore(storage)
    settings: dict[str, Any] = {"allow_private": True, "timeout": 2.0, "base_delay": 0.05}
    deliveries = Deliveries(store, **{**settings, **options})
    return AutomationEngine(store, deliveries)


@pytest.fixture
def harness(storage: SQLStorage, receiver: Receiver) -> Iterator[Harness]:  # noqa: F811
    log = Log(storage)
    engine = make_engine(storage)
    yield Harness(log, engine, receiver)
    engine.close()
