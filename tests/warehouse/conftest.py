"""Warehouse test helpers: a real second process that holds a warehouse's write lock."""
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

_HOLDER = ("import duckdb, os, sys\n"
           "con = duckdb.connect(sys.argv[1])\n"
           "print(os.getpid(), flush=True)\n"
           "sys.stdin.readline()\n"
           "con.close()\n")


@contextmanager
def _holding_write_lock(db_file: Path):
    """Yield the PID of a process with `db_file` open for writing; it closes on exit."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db_file)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = proc.stdout.readline().strip()
        assert pid.isdigit(), "the lock-holding process failed to open the database"
        yield int(pid)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


@pytest.fixture
def write_lock_holder():
    return _holding_write_lock
