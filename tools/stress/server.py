"""The app under test: ``app.py`` in a subprocess on a free loopback port (``AppServer``), whether
an app answers, and the server process's figures read from ``/proc`` (memory, CPU, descriptors,
threads).

``AppServer`` is the one way the project starts the app for a test, a script or this tool:
start, wait until ``/gradio_api/info`` answers (with a deadline, failing early when the process
exits), stop, and the log.  It imports nothing of the app."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from hsd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
APP_FILE = ROOT / "app.py"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_loopback(url: str) -> str:
    host = urllib.parse.urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise ConfigError(f"stress only drives an app on this machine (127.0.0.1 or localhost), not {host or url!r}")
    return url.rstrip("/") + "/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_proxy_open(url_or_request, timeout: float):
    """``urlopen`` that never goes through a proxy (the app is on this machine)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(url_or_request, timeout=timeout)


def answers(url: str, timeout: float = 5.0) -> bool:
    """Whether ``GET /gradio_api/info`` answers 200."""
    try:
        with no_proxy_open(url.rstrip("/") + "/gradio_api/info", timeout) as r:
            return r.status == 200
    except Exception:
        return False


def _proc_file(pid: int | None, name: str) -> str | None:
    """The text of ``/proc/PID/name``; None when the process is unknown or gone."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except OSError:
        return None


def _status_field(pid: int | None, key: str) -> int | None:
    """The first number of a ``/proc/PID/status`` line (``VmRSS:``, ``Threads:``)."""
    text = _proc_file(pid, "status") or ""
    line = next((ln for ln in text.splitlines() if ln.startswith(key + ":")), None)
    return int(line.split()[1]) if line else None


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process (VmRSS), MB; None when unknown."""
    kb = _status_field(pid, "VmRSS")
    return None if kb is None else kb / 1024.0


def thread_count(pid: int | None) -> int | None:
    return _status_field(pid, "Threads")


def open_fds(pid: int | None) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd")) if pid else None
    except OSError:
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (all threads), seconds."""
    text = _proc_file(pid, "stat")
    try:
        fields = text.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, IndexError, ValueError):
        return None


def cpu_busy(pid: int | None, window_s: float = 1.0) -> float | None:
    """Cores' worth of CPU the process used over the next ``window_s`` seconds."""
    a = cpu_seconds(pid)
    if a is None:
        return None
    time.sleep(window_s)
    b = cpu_seconds(pid)
    return None if b is None else (b - a) / window_s


SETTLED_CPU = 0.15                 # a window this quiet ends the wait at once
def wait_idle(pid: int | None, within_s: float = 10.0) -> float | None:
    """Poll 1-second CPU windows until the process has settled (or ``within_s`` passes); the
    quietest window's figure (cores).  Callers judge it against IDLE_CPU."""
    best = None
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        busy = cpu_busy(pid, 1.0)
        if busy is None:
            return None
        best = busy if best is None else min(best, busy)
        if busy < SETTLED_CPU:
            break
    return best


class AppServer:
    """``app.py`` in a subprocess on a free loopback port; a context manager.

    ``family`` sets ``HSD_FAMILY`` (None: the app's default); ``queue_size`` and ``concurrency``
    set ``HSD_QUEUE_SIZE`` / ``HSD_CONCURRENCY`` when given; ``extra_env`` goes last.  The child
    gets its own environment: this process's is never changed.  ``start`` waits until
    ``/gradio_api/info`` answers, up to ``timeout_s`` (None: no deadline), and fails at once if the
    process exits first; the log (stdout and stderr) is ``log_path``."""

    def __init__(self, family: str | None = None, queue_size: int | None = None, concurrency: int | None = None,
                 extra_env: dict | None = None, log_path: Path | None = None, poll_s: float = 0.25):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="hsd-app-", suffix=".log")[1])
        env = dict(os.environ)
        env.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                    "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "TOKENIZERS_PARALLELISM": "false", "GRADIO_SSR_MODE": "False"})
        settings = {"HSD_FAMILY": family, "HSD_QUEUE_SIZE": queue_size, "HSD_CONCURRENCY": concurrency}
        env.update({k: str(v) for k, v in settings.items() if v is not None})
        env.update(extra_env or {})
        self.env = env
        self.poll_s = poll_s
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.started_s = 0.0

    def start(self, timeout_s: float | None = 180.0) -> "AppServer":
        t0 = time.monotonic()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(APP_FILE)], cwd=str(ROOT), env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while timeout_s is None or time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                self.stop()
                raise ConfigError(f"app.py exited with code {self.proc.returncode} before it answered "
                                  f"(log: {self.log_path}: {self.log_tail(1)})")
            if answers(self.url, timeout=2.0):
                self.started_s = time.monotonic() - t0
                return self
            time.sleep(self.poll_s)
        self.stop()
        raise ConfigError(f"app.py did not answer on {self.url} within {timeout_s:.0f} s (log: {self.log_path})")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 5) -> str:
        return " | ".join(self.log_text().strip().splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "AppServer":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
