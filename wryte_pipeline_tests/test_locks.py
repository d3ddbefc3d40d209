import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from wryte_pipeline.locks import LeaseHeldError, SyncLease, hold_lease
from wryte_pipeline.store import utc_now


def test_lease_acquire_and_release(store):
    lease = SyncLease(store, "octo/blog@main", "run-1")
    assert lease.try_acquire() is None
    assert lease.holder().owner == "run-1"
    lease.release()
    assert lease.holder() is None


def test_lease_held_by_live_run(store):
    SyncLease(store, "octo/blog@main", "run-1").acquire(0)
    other = SyncLease(store, "octo/blog@main", "run-2")
    holder = other.try_acquire()
    assert holder is not None
    assert holder.owner == "run-1"
    with pytest.raises(LeaseHeldError, match="run-1"):
        other.acquire(0.5, sleep=lambda seconds: None)


def test_lease_taken_from_dead_process(store):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    SyncLease(store, "octo/blog@main", "run-1").acquire(0)
    with store.engine.begin() as connection:
        connection.execute(sa.update(store.tables.sync_leases).values(pid=int(dead.stdout)))
    other = SyncLease(store, "octo/blog@main", "run-2")
    assert other.try_acquire() is None
    assert other.holder().owner == "run-2"


def test_lease_taken_after_expiry(store):
    SyncLease(store, "octo/blog@main", "run-1").acquire(0)
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(store.tables.sync_leases).values(
                expires_at=utc_now() - timedelta(seconds=1), host="another-host"
            )
        )
    assert SyncLease(store, "octo/blog@main", "run-2").try_acquire() is None


def test_lease_renew_extends_expiry(store):
    lease = SyncLease(store, "octo/blog@main", "run-1")
    lease.acquire(0)
    before = lease.holder().expires_at
    lease.renew()
    assert lease.holder().expires_at >= before


def test_lease_separate_per_repository(store):
    with (
        hold_lease(store, "octo/blog@main", "run-1", 0),
        hold_lease(store, "octo/docs@main", "run-2", 0),
    ):
        pass
    assert SyncLease(store, "octo/blog@main", "x").holder() is None
