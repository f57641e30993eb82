"""The power-loss harness's handle on ``scenarios.powercut_fs``: mount it, cut the power, inject disk faults.

``PowerCutMount(base)`` starts the FUSE daemon on ``base/mnt`` (over ``base/fs/root``) and talks to it over a
Unix socket. A test puts the edge's or the hub's data directory under ``mount.path``, drives a workload, SIGKILLs
the processes and calls ``cut(prefix, seed, pids)``: everything under the prefix that was not fsync'd is gone,
or torn, as after a real power loss. ``fault(...)`` arms an EIO or ENOSPC on the Nth write, fsync or rename.

``unavailable()`` says why FUSE cannot work on this machine (no /dev/fuse, no fusermount3, no libfuse3, not
allowed to mount), or None; the tests skip with that reason and only then.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MOUNT_TIMEOUT_SECONDS = 15.0
"""The daemon imports mfusepy and mounts in well under a second; a busy 2-core CI machine gets room."""

CONTROL_TIMEOUT_SECONDS = 60.0
"""A cut rewrites at most a few MB of undo records; a minute means the daemon is stuck."""

FUSE_PACKAGE_HINT = "apt-get install -y fuse3 (tests/services_setup.sh does) and pip install mfusepy"


def unavailable() -> str | None:
    """Why a FUSE mount cannot work on this machine at all (no device), or None. What the project installs
    (Debian's fuse3 through ``make services``, mfusepy through ``.[dev]``) is not a reason to skip: its absence
    is a broken set-up, and ``PowerCutMount`` fails on it, naming what is missing."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine (a container started without it)"
    return None


def check_installed() -> None:
    """Raise, naming the fix, when the parts the project installs for the harness are missing."""
    if shutil.which("fusermount3") is None:
        raise RuntimeError(f"no fusermount3: {FUSE_PACKAGE_HINT}")
    try:
        import mfusepy  # noqa: F401 -- loads libfuse3 itself
    except (ImportError, OSError) as error:
        raise RuntimeError(f"mfusepy/libfuse3 cannot be loaded ({error}): {FUSE_PACKAGE_HINT}") from None


class PowerCutMount:
    def __init__(self, base: Path) -> None:
        check_installed()
        self.base = base
        self.path = base / "mnt"
        self.root = base / "fs" / "root"  # what the mount shows, for reading after a cut without the mount
        self._control_path = base / "control.sock"
        self.path.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(base / "powercut-fs.log", "ab")  # noqa: SIM115 -- the daemon's, closed in close()
        self._daemon = subprocess.Popen(
            [sys.executable, "-m", "scenarios.powercut_fs", str(base / "fs"), str(self.path), str(self._control_path)],
            stdout=self._log, stderr=self._log, cwd=Path(__file__).resolve().parents[1])
        self._wait_mounted()
        self._control = socket.socket(socket.AF_UNIX)
        self._control.settimeout(CONTROL_TIMEOUT_SECONDS)
        self._control.connect(str(self._control_path))
        self._stream = self._control.makefile("rw")

    def _wait_mounted(self) -> None:
        deadline = time.monotonic() + MOUNT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._daemon.poll() is not None:
                raise RuntimeError(f"the power-cut filesystem exited ({self._daemon.returncode}): {self.log()}")
            if os.path.ismount(self.path) and self._control_path.exists():
                return
            time.sleep(0.02)
        self.close()
        raise RuntimeError(f"the power-cut filesystem did not mount in {MOUNT_TIMEOUT_SECONDS:.0f} s: {self.log()}")

    def log(self) -> str:
        return (self.base / "powercut-fs.log").read_text(errors="replace")[-3000:]

    def _ask(self, **request: Any) -> Any:
        self._stream.write(json.dumps(request) + "\n")
        self._stream.flush()
        answer = json.loads(self._stream.readline())
        if not answer["ok"]:
            raise RuntimeError(f"power-cut filesystem refused {request}: {answer['error']}")
        return answer["result"]

    def cut(self, prefix: str, seed: int, pids: list[int] = ()) -> dict[str, int]:
        """Power loss under ``prefix`` (a path inside the mount, e.g. ``/edge``). Kill and reap the processes
        first; their pids are refused from now on, so nothing they had in flight lands after the cut."""
        return self._ask(cmd="cut", prefix=prefix, seed=seed, pids=list(pids))

    def fault(self, op: str, *, nth: int = 1, error: str = "EIO", times: int = 1, prefix: str = "/") -> None:
        """Make the ``nth`` next ``op`` (write, fsync, fsyncdir, rename, create, mkdir, unlink, truncate) under
        ``prefix`` fail with ``error`` (an errno name), ``times`` times in a row (-1: until cleared)."""
        self._ask(cmd="fault", op=op, nth=nth, error=error, times=times, prefix=prefix)

    def clear_faults(self) -> int:
        """Disarm every fault; returns how many fired."""
        return self._ask(cmd="clear_faults")

    def stats(self) -> dict[str, int]:
        return self._ask(cmd="stats")

    def inside(self, path: Path) -> str:
        """``path`` (under ``self.path``) as the daemon names it, for ``cut`` and ``fault``."""
        return "/" + str(path.relative_to(self.path))

    def close(self) -> None:
        unmounted = not os.path.ismount(self.path) or subprocess.run(
            ["fusermount3", "-u", str(self.path)], capture_output=True).returncode == 0
        if not unmounted:
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)  # busy: detach it
        if self._daemon.poll() is None:
            self._daemon.terminate()
        try:
            self._daemon.wait(10)
        except subprocess.TimeoutExpired:
            self._daemon.kill()
            self._daemon.wait(10)
        self._log.close()

    def __enter__(self) -> PowerCutMount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
