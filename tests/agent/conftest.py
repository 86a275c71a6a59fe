"""Fixtures: a real test controller on loopback sockets and rig agents in threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devices.agent import AgentConfig, RigAgent
from devices.minimal import MinimalDriver

from .peer import PeerController

AgentFactory = Callable[..., tuple[RigAgent, MinimalDriver]]


@pytest.fixture
def peer() -> Iterator[PeerController]:
    p = PeerController(heartbeat_s=0.2).start()
    try:
        yield p
    finally:
        p.terminate()


@pytest.fixture
def make_agent(peer: PeerController) -> Iterator[AgentFactory]:
    """Start agents (threads) against ``peer``; all are stopped and joined at teardown."""
    running: list[tuple[RigAgent, threading.Thread]] = []

    def factory(
        rig_id: str = "rig-01", driver: MinimalDriver | None = None, **cfg: Any
    ) -> tuple[RigAgent, MinimalDriver]:
        drv = driver or MinimalDriver(seed=len(running))
        agent = RigAgent(AgentConfig(controller=peer.endpoint, rig_id=rig_id, **cfg), drv)
        th = threading.Thread(target=agent.run, name=f"agent-{rig_id}", daemon=True)
        th.start()
        running.append((agent, th))
        assert peer.wait(lambda: rig_id in peer.rigs, 5.0), "agent did not register"
        return agent, drv

    yield factory
    for agent, _th in running:
        agent.stop()
    for _, th in running:
        th.join(5.0)
