"""The lab controller: rig registry, session engine, lossless data path, instructor API.

Public surface (everything else is private to this package):

* `Controller`, `ControllerConfig` — the engine and its tunables.
* `DurableSink`, `SinkBusy`, `SpoolSink`, `MemorySink` — where chunks become durable.
* `SessionObserver`, `SessionInfo`, `NullObserver` — the per-session data pipeline hook.
* `SessionEvent`, `SessionState` — session transitions as emitted to the event sink.
* `ApiClient`, `ApiError` — the instructor side of the API socket.
* `ServerSecurity`, `ClientSecurity`, `generate_keypair` — CurveZMQ.
"""

from lab_controller.controller.config import ControllerConfig
from lab_controller.controller.core import CommandOutcome, Controller
from lab_controller.controller.observers import NullObserver, SessionInfo, SessionObserver
from lab_controller.controller.security import (
    ClientSecurity,
    SecurityError,
    ServerSecurity,
    generate_keypair,
)
from lab_controller.controller.sessions import SessionEvent, SessionState
from lab_controller.controller.sinks import (
    DurableSink,
    MemorySink,
    SinkBusy,
    SpoolSink,
    decode_spool_record,
)
from lab_controller.controller.transport import ApiClient, ApiError

__all__ = [
    "ApiClient",
    "ApiError",
    "ClientSecurity",
    "CommandOutcome",
    "Controller",
    "ControllerConfig",
    "DurableSink",
    "MemorySink",
    "NullObserver",
    "SecurityError",
    "ServerSecurity",
    "SessionEvent",
    "SessionInfo",
    "SessionObserver",
    "SessionState",
    "SinkBusy",
    "SpoolSink",
    "decode_spool_record",
    "generate_keypair",
]
