"""A tiny subcommand framework shared by ``esan-train`` and ``esan-rt``.

Argument definitions are torch-free; handlers are ``"module:function"`` strings imported only when
their subcommand runs, so ``--help`` works with the base install alone.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from esan.runtime.core.errors import UserError

AddArgs = Callable[[argparse.ArgumentParser], None]


@dataclass
class CommandSet:
    prog: str
    description: str
    commands: dict[str, tuple[str, str, AddArgs]] = field(default_factory=dict)
    version: str | None = None  # ``--version`` prints ``<prog> <version>`` when set

    def register(self, name: str, help_text: str, handler: str, add_args: AddArgs) -> None:
        """Add a subcommand; ``handler`` is ``"module:function"`` taking the parsed namespace."""
        self.commands[name] = (help_text, handler, add_args)

    def build_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        if self.version is not None:
            parser.add_argument("--version", action="version", version=f"{self.prog} {self.version}")
        sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        for name, (help_text, _, add_args) in self.commands.items():
            add_args(sub.add_parser(name, help=help_text, description=help_text))
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        args = self.build_parser().parse_args(argv)
        return run_handler(self.commands[args.command][1], args, self.prog)


def run_handler(handler: str, args: argparse.Namespace, prog: str) -> int:
    """Import and call a handler; a ``UserError`` becomes one line on stderr and exit code 2."""
    module, func = handler.split(":")
    try:
        result = getattr(importlib.import_module(module), func)(args)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: 130; SIGTERM (esan.runtime.io.signals.Terminated): its exit_code
        code = int(getattr(exc, "exit_code", 130))
        print(f"{prog}: {'interrupted' if code == 130 else 'stopped (SIGTERM)'}", file=sys.stderr)
        return code
    except ImportError as exc:
        hint = opencv_import_hint(exc)
        if hint is None:
            raise
        print(f"{prog}: error: {hint}", file=sys.stderr)
        return 2
    return int(result or 0)


def opencv_import_hint(exc: ImportError) -> str | None:
    """One line on how to fix an OpenCV that cannot load its system libraries, or ``None`` if it is not that.

    The GUI wheel (``opencv-python``, the base install) links ``libGL``, GLib and X11 libraries that slim
    server images lack; the headless wheel provides the same ``cv2`` module without them.
    """
    tb, from_cv2 = exc.__traceback__, False
    while tb is not None:
        from_cv2 |= f"{os.sep}cv2{os.sep}" in tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if not (from_cv2 and ".so" in str(exc)):
        return None
    return (f"OpenCV cannot load a system library ({exc}). On a machine without a display install them "
            "(apt-get install libgl1 libglib2.0-0) or switch to the headless OpenCV: "
            "pip uninstall -y opencv-python && pip install opencv-python-headless "
            "(then watch with --view-port instead of --show)")
