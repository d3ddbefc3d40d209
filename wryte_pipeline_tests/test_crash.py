"""Crashes and overlaps: a killed worker, two syncs at once, a database restart mid-batch."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from wryte_pipeline.store import ContentStore
from wryte_pipeline_tests.helpers import (
    expected_documents,
    start_dagster_dev,
    stored_documents,
    wait_until,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def sync_env(fake, tmp_path, database_url, **extra):
    home = tmp_path / "dagster-home"
    home.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "WRYTE_REPO": "corpora/hugo-docs",
        "WRYTE_GITHUB_API_URL": fake.url,
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_HOME": str(tmp_path / "home"),
        "WRYTE_TARBALL_THRESHOLD": "100000",
        "DAGSTER_HOME": str(home),
        **extra,
    }


def start_sync(env):
    return subprocess.Popen(
        [sys.executable, "-m", "wryte_pipeline", "sync"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_outcomes(database_url, minimum, timeout=60.0):
    deadline = time.monotonic() + timeout
    engine = sa.create_engine(database_url)
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as connection:
                    count = connection.execute(
                        sa.text("SELECT count(*) FROM sync_outcomes")
                    ).scalar_one()
                if count >= minimum:
                    return count
            except (sa.exc.OperationalError, sa.exc.ProgrammingError):
                pass  # the sync has not created its tables yet
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"fewer than {minimum} outcomes after {timeout} s")


def duplicate_outcomes(database_url):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT batch_id, path, count(*) FROM sync_outcomes "
                    "GROUP BY batch_id, path HAVING count(*) > 1"
                )
            )
            return rows.fetchall()
    finally:
        engine.dispose()


@pytest.fixture
def hugo(corpus_clones, fake_github):
    repo = corpus_clones["hugo-docs"]
    head = fake_github.add_repo("corpora/hugo-docs", repo)
    return repo, head


@pytest.mark.slow
def test_killed_worker_resumed_next_sync(hugo, fake_github, tmp_path):
    repo, head = hugo
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = sync_env(fake_github, tmp_path, database_url)
    fake_github.set_faults(latency_seconds=0.02)

    first = start_sync(env)
    done_before_kill = wait_for_outcomes(database_url, 200)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    fake_github.set_faults(latency_seconds=0)

    second = subprocess.run(
        [sys.executable, "-m", "wryte_pipeline", "sync"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert second.returncode == 0, second.stdout + second.stderr
    assert stored_documents(database_url) == expected_documents(repo, head)
    assert duplicate_outcomes(database_url) == []
    batches = ContentStore(database_url)
    latest = batches.latest_batch()
    assert latest.total <= 993 - done_before_kill + 200


@pytest.mark.slow
def test_two_syncs_at_once_agree(hugo, fake_github, tmp_path):
    repo, head = hugo
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = sync_env(fake_github, tmp_path, database_url)
    env.pop("DAGSTER_HOME")
    fake_github.set_faults(latency_seconds=0.01)

    first = start_sync(env)
    wait_for_outcomes(database_url, 50)
    second = start_sync(env)
    first_out, first_err = first.communicate(timeout=300)
    second_out, second_err = second.communicate(timeout=300)

    assert first.returncode == 0, first_out + first_err
    assert second.returncode == 0, second_out + second_err
    assert stored_documents(database_url) == expected_documents(repo, head)
    assert duplicate_outcomes(database_url) == []


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restart_mid_batch(hugo, fake_github, tmp_path, postgres_url):
    repo, head = hugo
    env = sync_env(fake_github, tmp_path, postgres_url)
    env.pop("DAGSTER_HOME")
    fake_github.set_faults(latency_seconds=0.02)
    cluster = os.listdir("/etc/postgresql")[0]

    first = start_sync(env)
    wait_for_outcomes(postgres_url, 200)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    first.communicate(timeout=300)
    fake_github.set_faults(latency_seconds=0)

    for _attempt in range(3):
        again = subprocess.run(
            [sys.executable, "-m", "wryte_pipeline", "sync"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if again.returncode == 0:
            break
    assert again.returncode == 0, again.stdout + again.stderr
    assert stored_documents(postgres_url) == expected_documents(repo, head)
    assert duplicate_outcomes(postgres_url) == []


@pytest.mark.slow
def test_killed_daemon_recovers_on_restart(hugo, fake_github, tmp_path):
    """Kill -9 the daemon and its run worker mid-batch; a restarted daemon finishes the sync."""
    repo, head = hugo
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = sync_env(fake_github, tmp_path, database_url)
    fake_github.set_faults(latency_seconds=0.03)

    first = start_dagster_dev(env)
    try:
        wait_for_outcomes(database_url, 100, timeout=180)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert stored_documents(database_url) != expected_documents(repo, head)
    fake_github.set_faults(latency_seconds=0)

    second = start_dagster_dev(env)
    try:
        wait_until(lambda: stored_documents(database_url) == expected_documents(repo, head), 240)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)
    assert duplicate_outcomes(database_url) == []
