"""One run at a time per run folder: an exclusive lock on `runs/<name>/.lock` for a whole flow.

    with run_lock(run_dir):          # RunLocked at once if another run holds it
        ...every stage...

The lock is `flock` on the file (released by the kernel when the holding process dies, however
it dies), and the file says who holds it: PID, host, command and start time. Runs that only add
shards of their own (extraction of a shard range, several at once on a work pool) take it shared
(`shared=True`, each noting itself in `.lock-shared/<pid>.json`): they exclude a whole run, not
each other. A second run fails
at once with one line naming the holder; a lock file left by a killed run is taken over, with a
log line naming the dead holder. The pipeline flow (also as a deployment run) and every stage's
own CLI take it; readers (`python -m warehouse.sql`) do not.

flock is local to a machine: two hosts writing one run folder over NFS are not protected.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"
SHARED_HOLDERS = ".lock-shared"  # one file per holder of the shared lock, named by its PID
_HELD: dict[Path, int] = {}  # run folders this process holds: a nested run_lock is a no-op


class RunLocked(RuntimeError):
    """Another run holds the run folder."""


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """What the lock file says about its (last) holder, or None."""
    try:
        return json.loads(lock_path(run_dir).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run folder's lock now."""
    path = lock_path(run_dir)
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    return (f"PID {holder.get('pid')} on {holder.get('host')} ({holder.get('command', '?')}, "
            f"since {holder.get('started', '?')})")


def _holders(run_dir: Path) -> str:
    """Who holds the lock: the exclusive holder, or the shared ones."""
    shared = []
    for path in sorted((run_dir / SHARED_HOLDERS).glob("*.json")):
        try:
            shared.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    if shared:
        return "; ".join(_describe(h) for h in shared)
    return _describe(lock_holder(run_dir))


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join(["python", *sys.orig_argv[1:]])[:200],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@contextmanager
def run_lock(run_dir: Path, shared: bool = False) -> Iterator[None]:
    """Hold the run folder's lock for the duration (see the module docstring)."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _HELD:  # the CLI took it, then the flow it starts asks again
        _HELD[run_dir] += 1
        try:
            yield
        finally:
            _HELD[run_dir] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(run_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir} is in use by another run: {_holders(run_dir)}; "
                            "wait for it to finish or stop it") from None
        if shared:
            note = run_dir / SHARED_HOLDERS / f"{os.getpid()}.json"
            note.parent.mkdir(exist_ok=True)
            note.write_text(json.dumps(_me()), encoding="utf-8")
        else:
            previous = lock_holder(run_dir)
            if previous:
                log.warning("taking over the lock of %s left by %s, which is not running",
                            run_dir, _describe(previous))
            for stale in (run_dir / SHARED_HOLDERS).glob("*.json"):  # shared holders that died
                stale.unlink(missing_ok=True)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_me()).encode(), 0)
        _HELD[run_dir] = 1
        try:
            yield
        finally:
            del _HELD[run_dir]
            if shared:
                note.unlink(missing_ok=True)
            else:
                os.ftruncate(fd, 0)  # an empty file: released cleanly
    finally:
        os.close(fd)  # closing releases the flock
