"""No orphans: everything the pipeline CLI starts dies with it, however the CLI ends.

    with reaped_children():
        ...run the flow...

Every process the CLI starts (Prefect's ephemeral API server, torchrun and its ranks, spaCy
workers) inherits an environment variable naming this CLI run (TOKEN_VARIABLE). A small reaper
process, started first, waits on a pipe that only the CLI holds open: when the CLI process is
gone (it exited after its own shutdown, crashed, or was killed with SIGKILL, which no handler
sees) the pipe closes, and the reaper sends SIGTERM to every process still carrying the token,
waits GRACE_SECONDS (torchrun stops its ranks on SIGTERM), then SIGKILLs what is left. The token finds them even after they were re-parented or started a
session of their own; processes that are not ours (a `| tee` beside the CLI) are never touched.
SIGTERM to the CLI itself becomes an ordinary exit, so Prefect's own shutdown runs first.

    python -m flows.process_group TOKEN CLI_PID     # the reaper (started by reaped_children)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

TOKEN_VARIABLE = "TCC_PIPELINE_RUN"
GRACE_SECONDS = 5.0


def carrying(token: str, spare: tuple[int, ...] = ()) -> list[int]:
    """Live processes whose environment carries `token` (Linux /proc), but this one and `spare`."""
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (os.getpid(), *spare):
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie holds nothing; its parent reaps it
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def reap(token: str, cli: int) -> None:
    """Wait for EOF on stdin (the CLI is gone), then end every process carrying `token`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(1 << 16):
        pass
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 0.0)):
        for pid in carrying(token, spare=(cli,)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while carrying(token, spare=(cli,)) and time.monotonic() < deadline:
            time.sleep(0.1)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


_REAPERS: list[subprocess.Popen] = []  # their pipes stay open until this process is gone


@contextmanager
def reaped_children() -> Iterator[str]:
    """Tag every process started inside with a token, reaped once this process is gone; yields
    the token."""
    if not os.path.isdir("/proc"):
        yield ""  # not Linux: nothing to find them by
        return
    token = uuid.uuid4().hex
    os.environ[TOKEN_VARIABLE] = token
    reaper = subprocess.Popen([sys.executable, "-m", "flows.process_group", token, str(os.getpid())],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, close_fds=True,
                              start_new_session=True)  # a Ctrl-C of the terminal must not reach it
    _REAPERS.append(reaper)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield token
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.environ.pop(TOKEN_VARIABLE, None)


if __name__ == "__main__":
    reap(sys.argv[1], int(sys.argv[2]))
