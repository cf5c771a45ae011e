"""The Raft engine behind raftwork. Only this package imports pysyncobj."""

from consensus.engine.base import (
    Engine,
    EngineConfig,
    EngineEvent,
    EngineStatus,
    Failure,
    PeerStatus,
    Role,
    StateHooks,
    SubmitCallback,
)
from consensus.engine.pysyncobj_engine import EngineStartError, PysyncobjEngine, is_loopback
from consensus.engine.routing import clear_dial_route, dial_routes, set_dial_route


def create_engine(config: EngineConfig, hooks: StateHooks) -> Engine:
    """Build the default engine (pysyncobj) for ``config``."""
    return PysyncobjEngine(config, hooks)


__all__ = [
    "Engine",
    "EngineConfig",
    "EngineEvent",
    "EngineStatus",
    "EngineStartError",
    "Failure",
    "PeerStatus",
    "PysyncobjEngine",
    "Role",
    "StateHooks",
    "SubmitCallback",
    "clear_dial_route",
    "create_engine",
    "dial_routes",
    "is_loopback",
    "set_dial_route",
]
