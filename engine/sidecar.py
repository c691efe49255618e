"""Extraction beside generation: one worker thread turns the text that left the window into memory.

    sidecar = Sidecar(live.state_after)        # any function: evicted tokens -> result
    sidecar.submit(tokens[:window_start])      # a newer request replaces one not started yet
    state = sidecar.result(timeout=0.05)       # the newest finished result not taken yet, or None
    sidecar.close()

Each request carries every evicted token (the extractor re-reads the whole evicted text, so
coreference and sentence boundaries are those of one document), which makes only the newest
request worth running: one still waiting when a newer comes is dropped. `result(timeout)` waits
at most `timeout` seconds (None: until done) for the newest request; a result that finishes
later is handed out by the next call, so late triplets join at the engine's next update. A
thread, not a process: spaCy and torch release the GIL in their kernels, and the extractor's
model is loaded once beside the engine. `reset()` starts a new document: results of earlier
requests are never handed out. An exception in the worker is raised by the next `result`.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

Result = TypeVar("Result")


class Sidecar(Generic[Result]):
    def __init__(self, work: Callable[[list[int]], Result]):
        self._work = work
        self._lock = threading.Condition()
        self._submitted = 0                  # id of the newest request
        self._pending: tuple[int, list[int]] | None = None
        self._finished: tuple[int, Result] | None = None  # the newest finished request
        self._taken = 0                      # results up to this id are handed out or stale
        self._error: BaseException | None = None
        self._closed = False
        self.jobs = 0                        # requests run
        self.seconds = 0.0                   # spent running them
        self._thread = threading.Thread(target=self._run, name="extraction-sidecar", daemon=True)
        self._thread.start()

    def submit(self, tokens: list[int]) -> int:
        with self._lock:
            self._submitted += 1
            self._pending = (self._submitted, list(tokens))
            self._lock.notify_all()
            return self._submitted

    def result(self, timeout: float | None = 0.0) -> Result | None:
        """The newest finished result not yet handed out, after waiting at most `timeout` s for
        the newest request (None: as long as it takes)."""
        with self._lock:
            def ready() -> bool:
                done = self._finished is not None and self._finished[0] == self._submitted
                return done or self._error is not None or self._submitted <= self._taken
            if timeout is None or timeout > 0:
                self._lock.wait_for(ready, timeout)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._finished is None or self._finished[0] <= self._taken:
                return None
            self._taken = self._finished[0]
            return self._finished[1]

    def reset(self) -> None:
        """A new document: drop the waiting request and every result not handed out."""
        with self._lock:
            self._pending = None
            self._taken = self._submitted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()

    def __enter__(self) -> "Sidecar[Result]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                (job, tokens), self._pending = self._pending, None
            started = time.perf_counter()
            try:
                result = self._work(tokens)
            except BaseException as err:  # handed to the engine's thread, which reports it
                with self._lock:
                    self._error = err
                    self._lock.notify_all()
                continue
            with self._lock:
                self.jobs += 1
                self.seconds += time.perf_counter() - started
                if job > self._taken:
                    self._finished = (job, result)
                self._lock.notify_all()
