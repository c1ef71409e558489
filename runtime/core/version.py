"""The installed package's version and a UTC timestamp, for checkpoints, manifests and reports."""

from __future__ import annotations

import datetime as _dt


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("esan-rt")
    except PackageNotFoundError:
        return "0+unknown"


def utc_now(timespec: str = "seconds") -> str:
    """ISO-8601 UTC time (``timezone.utc``: ``datetime.UTC`` needs Python 3.11)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)  # noqa: UP017
