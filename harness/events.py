"""Progress as typed events.

Long work (fetching a kernel, building an image, booting a machine) emits events on a bus that
is passed in; listeners (the terminal printer, a JSON-lines log, tests) subscribe. There is no
module-level bus: whoever starts the work owns one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class Event:
    """One thing that happened. `kind` is a short dotted name, e.g. `kernel.fetch`."""

    kind: str
    message: str
    data: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def emit(self, kind: str, message: str, **data: object) -> Event:
        event = Event(kind, message, dict(data))
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)
        return event


class TerminalPrinter:
    """Prints events as `kharness: <message>` lines on stderr, with the time since start."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False,
                 verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose = verbose
        self.start = time.monotonic()

    def __call__(self, event: Event) -> None:
        if self.quiet and not event.kind.endswith((".warning", ".error")):
            return
        if event.kind.startswith("debug.") and not self.verbose:
            return
        elapsed = time.monotonic() - self.start
        print(f"kharness [{elapsed:6.1f}s] {event.message}", file=self.stream, flush=True)


def null_bus() -> EventBus:
    """A bus nobody listens to, for library callers that want no progress."""
    return EventBus()
