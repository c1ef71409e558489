"""ESAN-RT: the streaming runtime. ``esan.runtime.open(checkpoint_or_bundle=..., ...)`` -> a ready scheduler
(``esan.runtime.session``); imported on first use, so ``import esan.runtime`` stays light (no torch, no engines)."""

from __future__ import annotations

from typing import Any

_API = ("open", "prepare", "Session")


def __getattr__(name: str) -> Any:
    if name in _API:
        from esan.runtime import session

        return getattr(session, name)
    raise AttributeError(f"module 'esan.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
