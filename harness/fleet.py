"""What the scenario runner and the selftest runner share: machines run by a pool of worker
threads, and one way to stop them all.

An interrupt (SIGINT/SIGTERM arrive as KeyboardInterrupt in the main thread) or a write into
the results that failed (OutputError: a full disk, from a worker or a console reader thread)
cancels the run: no new boots, every machine stopped at once so that the workers blocked on
them unwind; what they were running is not a result.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from .machine import Machine
from .output import OutputError
from .results import ERROR, FAIL, PASS, SKIP, ResultsWriter, ScenarioResult


class Fleet:
    def __init__(self, writer: ResultsWriter, jobs: int) -> None:
        self.writer = writer
        self.jobs = max(1, jobs)
        self.counts = {PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0}
        # The first write into the results that failed (a full disk): the run stops, fatal.
        self.fatal: OutputError | None = None
        self._machines: set[Machine] = set()
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def _run_parallel(self, work: Callable, items: Iterable, name: str) -> None:
        """`work(item)` for every item on `jobs` threads; raises what stopped the run."""
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix=name)
        futures = [pool.submit(work, item) for item in items]
        try:
            for fut in futures:
                fut.result()
        except BaseException as exc:
            if isinstance(exc, OutputError):
                self.fatal = self.fatal or exc
            self._stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            if self.fatal is not None and not isinstance(exc, KeyboardInterrupt):
                raise self.fatal from None
            raise
        pool.shutdown(wait=True)
        if self.fatal is not None:
            raise self.fatal

    def _track(self, vm: Machine) -> bool:
        """Register a machine about to boot; False when the run is already cancelled."""
        vm.on_output_error = self._output_failed
        with self._lock:
            if self._cancel.is_set():
                return False
            self._machines.add(vm)
        return True

    def _untrack(self, vm: Machine) -> None:
        with self._lock:
            self._machines.discard(vm)

    def _stop_all(self) -> None:
        """Cancel the run: no new boots or scenarios, every machine stopped at once."""
        self._cancel.set()
        with self._lock:
            machines = list(self._machines)
        for vm in machines:
            with contextlib.suppress(Exception):
                vm.stop(soft_timeout=0.5)

    def _output_failed(self, exc: OutputError) -> None:
        """A write failed (possibly in a machine's console reader thread): the run stops
        within seconds; the machines are stopped from another thread (a reader cannot wait
        for itself)."""
        with self._lock:
            if self.fatal is not None:
                return
            self.fatal = exc
        threading.Thread(target=self._stop_all, name="stop-all", daemon=True).start()

    def write(self, result: ScenarioResult) -> int:
        """Write one result and count it; returns how many are done. A failed write stops
        the run (OutputError is raised on)."""
        try:
            self.writer.add(result)
        except OutputError as exc:
            self._output_failed(exc)
            raise
        with self._lock:
            self.counts[result.status] += 1
            return sum(self.counts.values())
