"""Dagster instance storages that keep their event log connections open between events.

A sync logs one materialization event per file, and the storages of Dagster 1.13.27 and
dagster-postgres 0.29.27 open a new database connection for every event they store. The
classes here are those storages with the event log's connections reused, so a file's event
costs about 1.5 ms on SQLite and 3 ms on PostgreSQL in place of 7 to 15 ms. Name one in the
``storage: custom:`` block of ``dagster.yaml``:

- ``wryte_pipeline.instance_storage.sqlite.PooledSqliteStorage``, config ``base_dir``, the
  files of Dagster's default SQLite storage;
- ``wryte_pipeline.instance_storage.postgres.PooledPostgresStorage``, the config of
  ``storage: postgres:``.

Each lives in its own module, so a SQLite instance never imports the PostgreSQL driver.
"""

from sqlalchemy.engine import make_url

from wryte_pipeline.errors import ConfigurationError

__all__ = ["check_postgres_driver"]


def check_postgres_driver(postgres_url: str) -> None:
    """Reject a Dagster instance URL whose driver dagster-postgres 0.29.27 cannot use.

    Through psycopg 3, which SQLAlchemy 2.1 picks for a plain ``postgresql://`` URL and so for
    ``postgres_db`` settings, every run fails on dagster-postgres's ``NOTIFY`` statement
    ("syntax error at or near $1").

    Raises:
        ConfigurationError: the URL selects psycopg 3.
    """
    url = make_url(postgres_url)
    if url.get_driver_name() != "psycopg":
        return
    redacted = url.render_as_string(hide_password=True)
    suggested = url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=True)
    raise ConfigurationError(
        f"Dagster instance database URL {redacted!r} selects the psycopg 3 driver, with which "
        f"dagster-postgres 0.29.27 fails every run: set postgres_url to {suggested!r} in "
        "dagster.yaml (postgres_db settings build a psycopg 3 URL too)"
    )
