"""Replay a corpus's history through `sync` with GitHub faults switched on, killing a worker.

After every step the documents table must equal ``git ls-tree`` at the served commit. Used by
the short test in CI and by ``benchmarks/fault_replay.py`` for the long version.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from wryte_pipeline_tests.corpora import first_parent_commits
from wryte_pipeline_tests.fake_github import FakeGitHub
from wryte_pipeline_tests.helpers import expected_documents, stored_documents

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAX_SYNCS_PER_STEP = 6
SYNC_TIMEOUT_SECONDS = 600

# Secondary limits under concurrency, 5 % of requests returning 502, 2 % of connections reset.
BASE_FAULTS: dict[str, Any] = {
    "latency_seconds": 0.01,
    "error_rate": 0.05,
    "reset_rate": 0.02,
    "secondary_limit_concurrency": 3,
    "secondary_retry_after": 1,
    "primary_limit": 100_000,
    "primary_window_seconds": 3600,
    "seed": 7,
}

# A primary limit that runs out part way through a step and resets a few seconds later.
EXHAUSTION_FAULTS: dict[str, Any] = {"primary_limit": 40, "primary_window_seconds": 4}


@dataclass
class ReplayFigures:
    """What a fault replay did and what it found."""

    commits_replayed: int = 0
    syncs: int = 0
    workers_killed: int = 0
    requests: int = 0
    faults_injected: int = 0
    retries: int = 0
    files_lost: int = 0
    duplicate_rows: int = 0
    mismatched_steps: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Return the figures as aligned lines."""
        rows = [
            ("commits replayed", self.commits_replayed),
            ("syncs run", self.syncs),
            ("workers killed", self.workers_killed),
            ("GitHub requests", self.requests),
            ("faults injected", self.faults_injected),
            ("retries", self.retries),
            ("files lost", self.files_lost),
            ("duplicate rows", self.duplicate_rows),
        ]
        return "\n".join(f"{name:>18}: {value}" for name, value in rows)


def pick_steps(repo: Path, count: int) -> list[str]:
    """Choose ``count`` commits spread over the first-parent history, ending at the head."""
    commits = first_parent_commits(repo)
    if count >= len(commits):
        return commits
    stride = len(commits) / count
    return [commits[min(int(index * stride), len(commits) - 1)] for index in range(1, count)] + [
        commits[-1]
    ]


def replay_with_faults(
    repo: Path,
    fake: FakeGitHub,
    workdir: Path,
    steps: list[str],
    *,
    kill_steps: set[int],
    exhaustion_steps: set[int],
    database_url: str | None = None,
) -> ReplayFigures:
    """Sync each step's commit until it succeeds, with faults; check the table every step."""
    database_url = database_url or f"sqlite:///{workdir / 'content.db'}"
    env = _sync_env(fake, workdir, database_url)
    fake.add_repo("corpora/replay", repo, head=steps[0])
    figures = ReplayFigures()
    for index, commit in enumerate(steps):
        fake.set_head("corpora/replay", commit)
        faults = dict(BASE_FAULTS)
        if index in exhaustion_steps:
            faults.update(EXHAUSTION_FAULTS)
        fake.set_faults(**faults)
        if index in kill_steps:
            _sync_and_kill(env, database_url, figures)
        _sync_until_clean(env, figures)
        fake.set_faults(**BASE_FAULTS)
        _check_step(repo, commit, database_url, figures)
        figures.commits_replayed += 1
    _count_server_figures(fake, database_url, figures)
    return figures


def _sync_env(fake: FakeGitHub, workdir: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "WRYTE_REPO": "corpora/replay",
        "WRYTE_GITHUB_API_URL": fake.url,
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_HOME": str(workdir / "home"),
        "WRYTE_TARBALL_THRESHOLD": "100000",
        "WRYTE_LOCK_WAIT_SECONDS": "5",
        # The fake's budgets are tiny; a reserve would stop the sync before the limit runs out.
        "WRYTE_RATE_LIMIT_RESERVE": "0",
    }


def _run_sync(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wryte_pipeline", "sync"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT_SECONDS,
    )


def _sync_until_clean(env: dict[str, str], figures: ReplayFigures) -> None:
    for _attempt in range(MAX_SYNCS_PER_STEP):
        figures.syncs += 1
        result = _run_sync(env)
        if result.returncode == 0:
            return
        if result.returncode == 2:
            raise AssertionError(f"sync reported a configuration error: {result.stderr}")
    raise AssertionError(f"no clean sync after {MAX_SYNCS_PER_STEP} attempts: {result.stdout}")


def _sync_and_kill(env: dict[str, str], database_url: str, figures: ReplayFigures) -> None:
    """Start a sync, kill -9 it once it has written some outcomes, and count the kill."""
    before = _outcome_count(database_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "wryte_pipeline", "sync"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if _outcome_count(database_url) > before:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        figures.workers_killed += 1
    process.wait(timeout=60)
    figures.syncs += 1


def _check_step(repo: Path, commit: str, database_url: str, figures: ReplayFigures) -> None:
    expected = expected_documents(repo, commit)
    stored = stored_documents(database_url)
    lost = [path for path, sha in expected.items() if stored.get(path) != sha]
    extra = [path for path in stored if path not in expected]
    figures.files_lost += len(lost) + len(extra)
    if lost or extra:
        figures.mismatched_steps.append(commit)


def _count_server_figures(fake: FakeGitHub, database_url: str, figures: ReplayFigures) -> None:
    stats = fake.stats
    figures.requests = stats.requests
    figures.faults_injected = stats.errors_injected + stats.resets_injected + stats.rate_limited
    with _engine(database_url) as engine, engine.connect() as connection:
        figures.retries = int(
            connection.execute(
                sa.text("SELECT coalesce(sum(attempts - 1), 0) FROM sync_outcomes")
            ).scalar_one()
        )
        figures.duplicate_rows = int(
            connection.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT batch_id, path FROM sync_outcomes "
                    "WHERE status = 'succeeded' GROUP BY batch_id, path "
                    "HAVING count(*) > 1) AS twice"
                )
            ).scalar_one()
        )


def _outcome_count(database_url: str) -> int:
    try:
        with _engine(database_url) as engine, engine.connect() as connection:
            return int(
                connection.execute(sa.text("SELECT count(*) FROM sync_outcomes")).scalar_one()
            )
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return 0


class _engine:
    """An engine disposed on exit, so no connection outlives one read."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def __enter__(self) -> sa.Engine:
        return self.engine

    def __exit__(self, *_exc: object) -> None:
        self.engine.dispose()
