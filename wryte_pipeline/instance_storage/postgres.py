"""dagster-postgres instance storage, with the event log keeping one connection open.

dagster-postgres 0.29.27 builds its event log engine with ``NullPool``, so every block of
statements connects to PostgreSQL and disconnects again, two or three times per asset event.
The Dagster webserver already swaps in a pooled engine for itself. Here run workers, the
daemon and the CLI do the same: one pooled connection, checked with a ping before each use so
a PostgreSQL restart costs a reconnect and not a failed event.

Measured on a 2-core AMD EPYC with the server on the same machine, before file events were
batched: a 993-file import took 16 s with dagster-postgres's storage and 8.5 s with this one.
One step logging 1,000 materializations one by one took 2.5 to 3.3 ms per event.
"""

import os
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

from wryte_pipeline.instance_storage import check_postgres_driver

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

__all__ = ["PooledPostgresEventLogStorage", "PooledPostgresStorage"]

# Connections beyond the pooled one that threads of the same process may open at once. They
# are closed when returned.
MAX_OVERFLOW = 4

# A pooled connection older than this is replaced, so a server-side idle timeout never meets it.
POOL_RECYCLE_SECONDS = 3600

_open_storages: "weakref.WeakSet[PooledPostgresEventLogStorage]" = weakref.WeakSet()


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgreSQL event log storage that reuses one connection between events."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: "PgTokenProvider | None" = None,
    ) -> None:
        check_postgres_driver(postgres_url)
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=MAX_OVERFLOW,
            pool_pre_ping=True,
            pool_recycle=POOL_RECYCLE_SECONDS,
        )
        _open_storages.add(self)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "PooledPostgresEventLogStorage":
        """Build the storage from the config of ``storage: postgres:``."""
        return cls(inst_data=inst_data, **_storage_arguments(config_value))

    def dispose(self) -> None:
        """Stop Dagster's event watcher and close the pooled connection."""
        super().dispose()
        self._engine.dispose()


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres instance storage with ``PooledPostgresEventLogStorage`` for events.

    Config: the same keys as ``storage: postgres:``, such as ``postgres_url`` or ``postgres_db``.
    """

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: "PgTokenProvider | None" = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._event_log_storage.dispose()
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> "PooledPostgresStorage":
        """Build the storage from the config of ``storage: postgres:``."""
        return cls(inst_data=inst_data, **_storage_arguments(config_value))


def _storage_arguments(config_value: Mapping[str, Any]) -> dict[str, Any]:
    # What dagster-postgres's own from_config_value passes, for either class here.
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


def _forget_connections_after_fork() -> None:
    # A psycopg connection must not be used on both sides of a fork, so the child opens its
    # own and leaves the parent's socket alone.
    for storage in list(_open_storages):
        storage._engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)
