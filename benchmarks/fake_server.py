"""The project's fake GitHub server in a subprocess, driven through its ``/_fake`` endpoints.

A subprocess keeps the server's threads off the benchmark's interpreter lock, and every
contender, in-process or not, reaches it the same way: over TCP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.proctree import BenchmarkError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 30
CONTROL_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 10
LOOPBACK_URL = re.compile(r"^http://127\.0\.0\.1:\d+$")
# Matches /repos/OWNER/NAME/git/trees/SHA as "trees" and /repos/OWNER/NAME/branches/main as
# "branches".
_REPO_ENDPOINT = re.compile(r"^/repos/[^/]+/[^/]+(?:/(?:git/)?([a-z_]+))?")
# GitHub's primary limit for an authenticated user: 5,000 requests an hour.
PRIMARY_LIMIT = 5000

# urllib honours *_proxy variables, so an empty ProxyHandler keeps control requests on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def loopback_environment(code_root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Return an environment without proxy, GitHub, Wryte or Dagster settings.

    Child processes then reach only the fake server named in their arguments, never a proxy or
    a real GitHub host that a developer's variables point at. ``PYTHONPATH`` is ``code_root``,
    the folder whose packages the child imports.
    """
    dropped = ("WRYTE_", "GITHUB_", "DAGSTER_", "PYTHONPATH")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(dropped) and not name.lower().endswith("_proxy")
    }
    environment["PYTHONPATH"] = str(code_root)
    return environment


class FakeGitHubProcess:
    """``python -m wryte_pipeline_tests.fake_github`` serving the given repositories."""

    def __init__(
        self, repos: Mapping[str, Path], log_path: Path, code_root: Path = PROJECT_ROOT
    ) -> None:
        """Prepare the command. ``repos`` maps ``owner/name`` to a git work tree."""
        self.repos = dict(repos)
        self.log_path = log_path
        self.code_root = code_root
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FakeGitHubProcess:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until it prints its loopback URL.

        Raises:
            BenchmarkError: the server exited, printed no URL in time, or printed a URL
                outside 127.0.0.1.
        """
        command = [sys.executable, "-m", "wryte_pipeline_tests.fake_github"]
        for full_name, git_dir in self.repos.items():
            command += ["--repo", f"{full_name}={git_dir}"]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.code_root,
                env=loopback_environment(self.code_root),
                stdout=subprocess.PIPE,
                stderr=log,
            )
        url = _read_first_line(self._process, START_TIMEOUT_SECONDS, self.log_path)
        if not LOOPBACK_URL.match(url):
            self.stop()
            raise BenchmarkError(
                f"fake GitHub printed {url!r} instead of an http://127.0.0.1 URL; "
                f"see {self.log_path}"
            )
        self.url = url

    def stop(self) -> None:
        """Terminate the server and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault switches, such as ``latency_seconds``, and return all of them."""
        return self._control("POST", "/_fake/faults", faults)

    def set_head(self, full_name: str, sha: str, branch: str = "main") -> None:
        """Point a served branch at ``sha``, as a push would."""
        self._control("POST", "/_fake/head", {"repo": full_name, "sha": sha, "branch": branch})

    def start_round(self) -> None:
        """Zero the counters and give the next contender a fresh primary rate-limit budget."""
        self._control("POST", "/_fake/stats/reset", {})
        self.set_faults(primary_limit=PRIMARY_LIMIT)

    def stats(self, include_log: bool = False) -> dict[str, Any]:
        """Return the server's counters since the last round started, optionally with its log.

        The log lists (method, path, status) of every API request and archive download.
        """
        return self._control("GET", "/_fake/stats?log=1" if include_log else "/_fake/stats", None)

    def _control(self, method: str, path: str, body: object | None) -> dict[str, Any]:
        if not self.url:
            raise BenchmarkError("fake GitHub is not running")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with _OPENER.open(request, timeout=CONTROL_TIMEOUT_SECONDS) as response:
            payload: dict[str, Any] = json.loads(response.read())
        return payload


def requests_by_endpoint(log: list[list[Any]]) -> dict[str, int]:
    """Count logged requests by GitHub endpoint, such as ``branches``, ``trees`` or ``blobs``."""
    counts: dict[str, int] = {}
    for _method, path, _status in log:
        endpoint = _endpoint(str(path))
        counts[endpoint] = counts.get(endpoint, 0) + 1
    return counts


def _endpoint(path: str) -> str:
    if path.startswith("/_codeload/"):
        return "archive download"
    if path == "/rate_limit":
        return "rate_limit"
    match = _REPO_ENDPOINT.match(path)
    if match is None:
        return path
    return match.group(1) or "repository"


def _read_first_line(
    process: subprocess.Popen[bytes], timeout_seconds: float, log_path: Path
) -> str:
    stdout = process.stdout
    assert stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_seconds)
    if not lines or not lines[0]:
        process.kill()
        process.wait()
        raise BenchmarkError(
            f"fake GitHub printed no URL within {timeout_seconds} s (exit status "
            f"{process.returncode}); see {log_path}"
        )
    return lines[0].decode().strip()
