"""A local Ray of the sweep's own that leaves nothing behind, even when the driver is killed.

``ray.init(address="local")`` starts the GCS, raylet, log monitor, autoscaler monitor and dashboard
head as children of the driver, with kernel fate-sharing (PR_SET_PDEATHSIG: they die with it),
and the raylet starts the dashboard and runtime-env agents and the workers. After ``kill -9`` of
the driver the agents outlive the raylet (seen here: ``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``). Ray's own reaper is not started when fate-sharing is available, and
``ray stop`` matches process names, so it would stop every Ray on the machine.

So the driver starts a watchdog in a session of its own, holding the read end of a pipe only
the driver writes to: EOF means the driver is gone (exited or killed). The watchdog then stops
every process that holds a file open in this Ray session's directory (each Ray process writes its
logs there; setproctitle rewrites their command lines, so names can't tell sessions apart).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

import psutil


@dataclass
class Watchdog:
    """The running watchdog; ``close()`` after ``ray.shutdown()`` lets it sweep up and exit."""

    process: subprocess.Popen

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def start(address: Optional[str]) -> Optional[Watchdog]:
    """``ray.init`` as the sweep needs it; a watchdog when this starts a local Ray (None when joining one)."""
    import ray

    local = address is None
    if local:
        # A new local cluster turns token auth on (Ray's default) and warns about it at every start;
        # the default is right for a sweep, the warning is noise.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # "local" starts a Ray of our own; plain None would join any cluster already running here.
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             configure_logging=True)
    if not local:
        return None
    session = ray._private.worker._global_node.get_session_dir_path()  # no public API gives it
    proc = subprocess.Popen([sys.executable, "-m", "sweep.local_ray", session, str(os.getpid())],
                            stdin=subprocess.PIPE, start_new_session=True)
    return Watchdog(proc)


def session_processes(session: str, skip: set[int]) -> list[psutil.Process]:
    """Processes with a file open under ``session`` (a Ray session directory)."""
    prefix = session.rstrip("/") + "/"
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if any(f.path.startswith(prefix) for f in proc.open_files()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_session(session: str, driver: int) -> None:
    """SIGTERM what is left of the session, SIGKILL what is still there a few seconds later."""
    skip = {os.getpid(), driver}
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        procs = session_processes(session, skip)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                continue
        if procs and grace:
            psutil.wait_procs(procs, timeout=grace)


def _watch(session: str, driver: int) -> None:
    # SIGINT (Ctrl-C in the driver's terminal) is for the driver; the watchdog waits for EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    if psutil.pid_exists(driver):  # a normal exit: ray.shutdown() ran; give stragglers a moment
        time.sleep(0.5)
    stop_session(session, driver)


if __name__ == "__main__":
    _watch(sys.argv[1], int(sys.argv[2]))
