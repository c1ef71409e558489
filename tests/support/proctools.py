"""Child processes whose signal dispositions do not depend on what the test run inherited.

A test suite started from a script's background job inherits SIGINT ignored; children would inherit
that too. ``preexec`` sets SIGINT and SIGTERM explicitly in the child before it runs (default action,
or ignored with ``ignore_sigint=True`` to prove the program installs its own handler).
"""

from __future__ import annotations

import signal
from collections.abc import Callable


def preexec(ignore_sigint: bool = False) -> Callable[[], None]:
    """A ``Popen(preexec_fn=...)`` setting SIGINT (default or ignored) and SIGTERM (default) in the child."""

    def run() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])

    return run
