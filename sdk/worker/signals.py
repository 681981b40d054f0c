"""SIGTERM / SIGINT for every worker running on one event loop, and the process's last resort.

Signal handlers are process-wide and ``loop.add_signal_handler`` keeps one per signal, so the
workers of a process (``asyncio.gather(w1.run(), w2.run())``) share one hub per loop that tells
each of them. The first listener installs the handlers; the last one restores the defaults.

``HardExit`` is for a process whose only purpose is to be a worker (``jetwork worker``): once it
aborts, it leaves with ``os._exit`` at a deadline, whatever its event loop or threads are doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Final

from sdk.worker.executors.process_group import kill_live_groups

SHUTDOWN_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

Listener = Callable[[signal.Signals], None]


class _Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listeners: list[Listener] = []
        self.installed = False

    def notify(self, sig: signal.Signals) -> None:
        for listener in list(self.listeners):
            listener(sig)

    def install(self) -> bool:
        try:
            for sig in SHUTDOWN_SIGNALS:
                self.loop.add_signal_handler(sig, self.notify, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            return False  # not the main thread, or no signals on this platform
        self.installed = True
        return True

    def uninstall(self) -> None:
        if self.installed:
            for sig in SHUTDOWN_SIGNALS:
                self.loop.remove_signal_handler(sig)
            self.installed = False


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = weakref.WeakKeyDictionary()


def listen_for_shutdown(listener: Listener) -> Callable[[], None]:
    """Call ``listener(sig)`` on every SIGTERM/SIGINT; returns the function that stops it.

    Does nothing (and returns a no-op) where signal handlers cannot be installed.
    """
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = _Hub(loop)
    if not hub.installed and not hub.install():
        return lambda: None
    hub.listeners.append(listener)

    def stop() -> None:
        if listener in hub.listeners:
            hub.listeners.remove(listener)
        if not hub.listeners:
            hub.uninstall()

    return stop


class HardExit:
    """Ends the process with ``code``: now, or ``arm(after)`` seconds from now in a thread.

    Before leaving it SIGKILLs the process groups of the jobs still running (``os._exit`` skips
    every cleanup: asyncio's, which waits for the threads of sync handlers that may never
    return, and the interpreter's).
    """

    def __init__(self, code: int) -> None:
        self.code = code
        self._timer: threading.Timer | None = None

    def arm(self, after: float) -> None:
        if self._timer is None:
            self._timer = threading.Timer(after, self.now)
            self._timer.daemon = True
            self._timer.start()

    def now(self) -> None:
        kill_live_groups()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(self.code)
