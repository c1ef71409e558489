"""Errors that CLIs turn into one clear line and a non-zero exit (shared by every ``esan`` package)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad path, corrupt file, wrong option); the message says how."""
