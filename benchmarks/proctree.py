"""Run a command and measure its wall time and the peak RSS of its whole process tree.

RSS comes from ``/proc``, so this works on Linux only. Every ``SAMPLE_INTERVAL_SECONDS`` the
sampler finds the command's descendants through ``/proc/PID/stat`` and sums their ``statm``
resident pages. A process that lives for less than one interval can be missed, so the peak is a
lower bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SAMPLE_INTERVAL_SECONDS = 0.05
PROBE_INTERVAL_SECONDS = 0.1
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


class BenchmarkError(RuntimeError):
    """A benchmark step failed, for example a command timed out or a server did not start."""


@dataclass(frozen=True)
class Measurement:
    """Outcome of one measured command.

    Attributes:
        returncode: the command's exit status.
        wall_seconds: time from process start to exit.
        peak_rss_bytes: the largest RSS sum over the process tree seen by the sampler.
        probe_seconds: seconds from process start until the probe first returned True, or
            None when it never did.
        stdout: the command's standard output, decoded as UTF-8.
        stderr: the command's standard error, decoded as UTF-8.
    """

    returncode: int
    wall_seconds: float
    peak_rss_bytes: int
    probe_seconds: float | None
    stdout: str
    stderr: str


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_seconds: float,
    probe: Callable[[], bool] | None = None,
) -> Measurement:
    """Run ``command`` to completion while sampling RSS and polling ``probe``.

    The command gets its own session, so on timeout its whole process group is killed.

    Raises:
        BenchmarkError: the command ran longer than ``timeout_seconds``.
    """
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.monotonic()
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        sampler = _TreeSampler(process.pid, start, probe)
        sampler.start()
        try:
            returncode = process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired as error:
            _kill_group(process)
            raise BenchmarkError(
                f"{' '.join(command)!r} ran longer than {timeout_seconds:.0f} s and was killed"
            ) from error
        except BaseException:
            # An interrupted benchmark must not leave the command running in its own session.
            _kill_group(process)
            raise
        finally:
            wall_seconds = time.monotonic() - start
            sampler.stop()
        probe_seconds = sampler.probe_seconds
        if probe is not None and probe_seconds is None and probe():
            probe_seconds = wall_seconds
        return Measurement(
            returncode=returncode,
            wall_seconds=wall_seconds,
            peak_rss_bytes=sampler.peak_rss_bytes,
            probe_seconds=probe_seconds,
            stdout=_read_text(stdout),
            stderr=_read_text(stderr),
        )


def tree_rss_bytes(root_pid: int) -> int:
    """Return the RSS summed over ``root_pid`` and all its descendants."""
    return sum(_rss_bytes(pid) for pid in _descendants(root_pid))


class _TreeSampler:
    """Background thread that records the peak tree RSS and when the probe first passed."""

    def __init__(self, root_pid: int, start: float, probe: Callable[[], bool] | None) -> None:
        self.root_pid = root_pid
        self.start_time = start
        self.probe = probe
        self.peak_rss_bytes = 0
        self.probe_seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        next_probe = self.start_time
        while not self._stop.is_set():
            self.peak_rss_bytes = max(self.peak_rss_bytes, tree_rss_bytes(self.root_pid))
            now = time.monotonic()
            if self.probe is not None and self.probe_seconds is None and now >= next_probe:
                next_probe = now + PROBE_INTERVAL_SECONDS
                if self.probe():
                    self.probe_seconds = time.monotonic() - self.start_time
            self._stop.wait(SAMPLE_INTERVAL_SECONDS)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        parent = _parent_pid(entry)
        if parent is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found = [root_pid]
    index = 0
    while index < len(found):
        found.extend(children.get(found[index], []))
        index += 1
    return found


def _parent_pid(process_dir: Path) -> int | None:
    try:
        stat = (process_dir / "stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may contain spaces, so split after the last ")".
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None


def _rss_bytes(pid: int) -> int:
    try:
        statm = (PROC / str(pid) / "statm").read_text().split()
    except OSError:
        return 0
    return int(statm[1]) * PAGE_BYTES if len(statm) > 1 else 0


def _read_text(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode("utf-8", "replace")
