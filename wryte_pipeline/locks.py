"""A lease per repository, so two syncs of one repository never write at the same time.

A run holds the lease while it applies a batch and renews it after every written chunk. A
lease counts as free once it expires, or at once when its holder ran on this host and that
process is gone (a worker killed with ``kill -9`` releases nothing). Every change is a
compare-and-swap ``UPDATE``, so SQLite and PostgreSQL give the same guarantee.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from wryte_pipeline.errors import WryteError
from wryte_pipeline.store import ContentStore, as_utc, utc_now

logger = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
POLL_SECONDS = 1.0


class LeaseHeldError(WryteError):
    """Another live sync holds the repository's lease."""


@dataclass(frozen=True)
class LeaseHolder:
    """The holder of a lease, as stored."""

    owner: str
    host: str
    pid: int
    expires_at: datetime

    def is_dead(self) -> bool:
        """Tell whether the lease expired or its process on this host has exited."""
        expires_at = as_utc(self.expires_at)
        if expires_at is None or expires_at < utc_now():
            return True
        return self.host == socket.gethostname() and not _process_alive(self.pid)


class SyncLease:
    """The lease on one repository, held in the content store."""

    def __init__(self, store: ContentStore, source: str, owner: str) -> None:
        """Name the repository (``source``) and the run that wants it (``owner``)."""
        self.store = store
        self.source = source
        self.owner = owner

    @property
    def _table(self) -> sa.Table:
        return self.store.tables.sync_leases

    def holder(self) -> LeaseHolder | None:
        """Return the current holder, live or not, or None."""
        query = sa.select(self._table).where(self._table.c.source == self.source)
        with self.store.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            return None
        return LeaseHolder(row["owner"], row["host"], row["pid"], row["expires_at"])

    def try_acquire(self) -> LeaseHolder | None:
        """Take the lease if it is free; return None on success, else the live holder."""
        holder = self.holder()
        if holder is None:
            return None if self._insert() else self.holder()
        if holder.owner != self.owner and not holder.is_dead():
            return holder
        return None if self._swap(expected_owner=holder.owner) else self.holder()

    def acquire(self, wait_seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Take the lease, waiting up to ``wait_seconds`` for a live holder to finish."""
        deadline = time.monotonic() + wait_seconds
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"another sync of {self.source!r} is running (run {holder.owner}, pid "
                    f"{holder.pid} on {holder.host}); this one stopped without writing. Wait "
                    "for it to finish, or sync again later"
                )
            logger.info("waiting for run %s to release %s", holder.owner, self.source)
            sleep(POLL_SECONDS)

    def renew(self) -> None:
        """Push the expiry forward; called after each written chunk."""
        self._swap(expected_owner=self.owner)

    def release(self) -> None:
        """Give the lease up, if this owner still holds it."""
        statement = sa.delete(self._table).where(
            self._table.c.source == self.source, self._table.c.owner == self.owner
        )
        with self.store.engine.begin() as connection:
            connection.execute(statement)

    def _values(self) -> dict[str, Any]:
        now = utc_now()
        return {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=LEASE_SECONDS),
        }

    def _insert(self) -> bool:
        try:
            with self.store.engine.begin() as connection:
                connection.execute(
                    sa.insert(self._table), {"source": self.source, **self._values()}
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def _swap(self, expected_owner: str) -> bool:
        statement = (
            sa.update(self._table)
            .where(self._table.c.source == self.source, self._table.c.owner == expected_owner)
            .values(**self._values())
        )
        with self.store.engine.begin() as connection:
            return bool(connection.execute(statement).rowcount)


def lease_key(repository: str, branch: str | None) -> str:
    """Name the lease of one branch of one repository."""
    return f"{repository}@{branch or ''}"


@contextmanager
def hold_lease(
    store: ContentStore, source: str, owner: str, wait_seconds: float
) -> Iterator[SyncLease]:
    """Hold the repository's lease for the duration of the block."""
    lease = SyncLease(store, source, owner)
    lease.acquire(wait_seconds)
    try:
        yield lease
    finally:
        lease.release()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
