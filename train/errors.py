"""Errors that CLIs turn into one clear line and a non-zero exit."""

from __future__ import annotations

from esan.runtime.core.errors import UserError

__all__ = ["UserError"]
