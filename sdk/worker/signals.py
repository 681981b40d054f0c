"""SIGTERM / SIGINT for every worker running on one event loop.

Signal handlers are process-wide and ``loop.add_signal_handler`` keeps one per signal, so the
workers of a process (``asyncio.gather(w1.run(), w2.run())``) share one hub per loop that tells
each of them. The first listener installs the handlers; the last one restores the defaults.
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Callable
from typing import Final

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
