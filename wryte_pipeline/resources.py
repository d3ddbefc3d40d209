"""The Dagster resource that opens the repository source and the content store.

Fields left empty fall back to the ``WRYTE_*`` environment variables, read when the resource is
used rather than when the code location loads, so loading definitions never needs a setting.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from wryte_pipeline.errors import ConfigurationError
from wryte_pipeline.github import GitHubSource
from wryte_pipeline.repositories import RepositoryConfig
from wryte_pipeline.settings import SAMPLE_BUNDLE, Settings, load_settings
from wryte_pipeline.source import LocalGitSource, RepositorySource
from wryte_pipeline.store import ContentStore


class WryteResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Repository and content store settings; empty fields come from the environment."""

    repository: str = Field(
        default="", description="'owner/name', a local git path or 'sample'; empty: WRYTE_REPO"
    )
    branch: str = Field(default="", description="branch to follow; empty: WRYTE_BRANCH or default")
    database_url: str = Field(
        default="", description="SQLAlchemy URL of the content store; empty: WRYTE_DATABASE_URL"
    )
    api_url: str = Field(default="", description="GitHub REST URL; empty: WRYTE_GITHUB_API_URL")
    paths: str = Field(default="", description="comma-separated globs; empty: WRYTE_PATHS")
    token_env: str = Field(
        default="", description="variable holding this repository's token; empty: GITHUB_TOKEN"
    )
    table_prefix: str = Field(default="", description="prefix of the content table names")

    _store: ContentStore | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        """Return the environment's settings with this resource's non-empty fields on top."""
        settings = load_settings(os.environ)
        overrides: dict[str, Any] = {
            "repository": self.repository,
            "branch": self.branch,
            "database_url": self.database_url,
            "api_url": self.api_url,
            "table_prefix": self.table_prefix,
            "path_patterns": tuple(part.strip() for part in self.paths.split(",") if part.strip()),
        }
        chosen = {key: value for key, value in overrides.items() if value}
        settings = replace(settings, **chosen)
        if settings.is_github and self.token_env:
            settings = replace(settings, token=self._token_from_env())
        return settings

    def for_repository(self, config: RepositoryConfig) -> WryteResource:
        """Return a copy with one configured repository's settings on top of this one's."""
        return WryteResource(
            repository=config.repo or self.repository,
            branch=config.branch or self.branch,
            database_url=config.database_url or self.database_url,
            api_url=self.api_url,
            paths=",".join(config.paths) or self.paths,
            token_env=config.token_env or self.token_env,
            table_prefix=config.table_prefix or self.table_prefix,
        )

    def open_store(self) -> ContentStore:
        """Return the content store, connecting on first use."""
        if self._store is None:
            settings = self.settings()
            self._store = shared_store(settings.resolved_database_url, settings.table_prefix)
        return self._store

    def _token_from_env(self) -> str | None:
        if not self.token_env:
            return None
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            raise ConfigurationError(
                f"environment variable {self.token_env!r} is not set: export it with the "
                "repository's GitHub token, or remove token_env from the repository's settings"
            )
        return token

    def open_source(self) -> RepositorySource:
        """Return the source for the configured repository."""
        return open_source(self.settings())


_SHARED_STORES: OrderedDict[tuple[str, str], ContentStore] = OrderedDict()
_SHARED_STORES_LOCK = threading.Lock()
MAX_SHARED_STORES = 8


def shared_store(url: str, table_prefix: str) -> ContentStore:
    """Return one store per database and table prefix for the whole process.

    Sensor ticks run in the long-lived code server and build resources anew each tick, so a
    store per tick would leave an engine and its pooled connections behind every time. The
    least recently used store beyond the first few is closed.
    """
    key = (url, table_prefix)
    with _SHARED_STORES_LOCK:
        store = _SHARED_STORES.get(key)
        if store is None:
            store = ContentStore(url, table_prefix=table_prefix)
            _SHARED_STORES[key] = store
        _SHARED_STORES.move_to_end(key)
        while len(_SHARED_STORES) > MAX_SHARED_STORES:
            _key, evicted = _SHARED_STORES.popitem(last=False)
            evicted.dispose()
    return store


def open_source(settings: Settings) -> RepositorySource:
    """Build the GitHub or local git source that ``settings`` names."""
    if settings.is_github:
        return GitHubSource(
            settings.repository,
            branch=settings.branch,
            token=settings.token,
            api_url=settings.api_url,
            concurrency=settings.concurrency,
            tarball_threshold=settings.tarball_threshold,
        )
    if settings.repository == "sample":
        git_dir = ensure_sample_repository(settings.home)
        return LocalGitSource(git_dir, settings.branch or "main", name="sample")
    return LocalGitSource(Path(settings.repository), settings.branch)


def ensure_sample_repository(home: Path) -> Path:
    """Clone the bundled sample repository into ``home`` once and return its folder."""
    git_dir = home / "sample-repository"
    if (git_dir / ".git").exists():
        return git_dir
    if not SAMPLE_BUNDLE.exists():
        raise ConfigurationError(
            f"sample bundle {str(SAMPLE_BUNDLE)!r} not found: reinstall the package or set "
            "WRYTE_REPO to 'owner/name'"
        )
    home.mkdir(parents=True, exist_ok=True)
    command = ["git", "clone", "--quiet", "--branch", "main", str(SAMPLE_BUNDLE), str(git_dir)]
    subprocess.run(command, check=True, capture_output=True)
    return git_dir
