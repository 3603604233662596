"""Signals and exit codes of the command line: SIGTERM unwinds like Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("ttasr")


class UsageError(Exception):
    """A command used wrongly (missing inputs, bad --set): exit code 2, like argparse's."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what batch schedulers send), raised where the program is.

    A subclass of KeyboardInterrupt so that everything that unwinds cleanly on Ctrl-C does
    so on SIGTERM too: ``Adapter.fit`` keeps the images adapted so far, ``atomic_write``
    removes its temporary file, and nothing catching ``Exception`` swallows it.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _SignalTrap:
    """Turns SIGTERM into :class:`Terminated` while a command runs, and remembers it.

    ``Adapter.fit`` swallows an interrupt between images of a single-image fit (it keeps
    the results so far); :attr:`received` still tells the command which signal it was.
    During training the loop installs its own handler and reports the signal itself.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handler(signum: int, _frame: Any) -> None:
            self.received = signum
            raise Terminated(signum)

        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


TRAP = _SignalTrap()


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)

