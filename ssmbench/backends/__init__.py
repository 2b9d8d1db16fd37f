"""The decode backends, one module each (``BACKEND`` in it), discovered: adding one is a module here and nothing
else (the option's choices, the sweep's axis, the harness and calibration take it from this registry). Their
names, in the order the sweep runs them, come from ``ssmbench.names`` (read from the file names, without
importing torch)."""

from __future__ import annotations

import importlib

from ..names import backend_names
from .base import Backend, BackendUnavailable, decoder_call, generate_call

BACKENDS: dict[str, Backend] = {}
for _name in backend_names():
    _backend = importlib.import_module(f"{__name__}.{_name}").BACKEND
    if _backend.name != _name:
        raise ImportError(f"ssmbench/backends/{_name}.py: its BACKEND is named {_backend.name!r}, not {_name!r}")
    BACKENDS[_name] = _backend


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def decode_path(lm, name: str) -> str:
    """What backend ``name`` runs for this model (raises ``BackendUnavailable`` saying why it cannot)."""
    return get(name).decode_path(lm)


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "decode_path", "decoder_call", "generate_call", "get"]
