"""Fixtures for controller tests: a controller on ephemeral loopback ports with a real spool."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from controller_testkit import ScriptedRig

from lab_controller.controller import (
    ApiClient,
    Controller,
    ControllerConfig,
    SessionEvent,
    SpoolSink,
)

FAST = {
    "control_endpoint": "tcp://127.0.0.1:*",
    "data_endpoint": "tcp://127.0.0.1:*",
    "api_endpoint": "tcp://127.0.0.1:*",
    # Short intervals keep the suite fast; the kill -9 test uses the production 1 s.
    "heartbeat_interval_s": 0.2,
    "timesync_interval_s": 0.5,
    "command_timeout_s": 2.0,
    "interrupted_grace_s": 5.0,
}


class Harness:
    """A running controller plus the rigs and clients a test made (all closed at teardown)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ctrl: Controller | None = None
        self.sink: SpoolSink | None = None
        self.rigs: list[ScriptedRig] = []
        self.clients: list[ApiClient] = []
        self.events: list[SessionEvent] = []

    def start(self, observers: Sequence[Any] = (), **overrides: Any) -> Controller:
        cfg = ControllerConfig(**{**FAST, **overrides})
        return self.start_with(cfg, observers=observers)

    def start_with(self, cfg: ControllerConfig, **kw: Any) -> Controller:
        self.sink = SpoolSink(self.tmp / "spool")
        self.ctrl = Controller(cfg, self.sink, event_sink=self.events.append, **kw)
        self.ctrl.start()
        return self.ctrl

    @property
    def control(self) -> str:
        assert self.ctrl is not None
        return self.ctrl.endpoints["control"]

    @property
    def api_endpoint(self) -> str:
        assert self.ctrl is not None
        return self.ctrl.endpoints["api"]

    def rig(self, rig_id: str, **kw: Any) -> ScriptedRig:
        r = ScriptedRig(self.control, rig_id, **kw).start()
        self.rigs.append(r)
        return r

    def client(self) -> ApiClient:
        c = ApiClient(self.api_endpoint, timeout_s=10)
        self.clients.append(c)
        return c

    def close(self) -> None:
        for r in self.rigs:
            r.stop()
        for c in self.clients:
            c.close()
        if self.ctrl is not None:
            self.ctrl.stop()
        if self.sink is not None:
            self.sink.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()
