"""Repositories to sync: the one named by ``WRYTE_*`` variables, or those of a config file.

A config file (``WRYTE_CONFIG``) lists several repositories. Each gets its own assets, file
partitions, sensor, jobs and tables, prefixed by its name, and all share the run queue::

    repositories:
      - name: docs
        repo: gohugoio/hugoDocs
        branch: master
        paths: ["content/**/*.md"]
        token_env: DOCS_GITHUB_TOKEN
        table_prefix: docs_
      - name: blog
        repo: rust-lang/blog.rust-lang.org
        database_url: postgresql://content@db/blog
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from wryte_pipeline.errors import ConfigurationError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ALLOWED_KEYS = {"name", "repo", "branch", "paths", "token_env", "database_url", "table_prefix"}


@dataclass(frozen=True)
class RepositoryConfig:
    """One repository to sync; empty fields fall back to the ``WRYTE_*`` variables.

    Attributes:
        name: prefix of the repository's asset keys, jobs and sensor; None for the single
            repository configured by environment variables, whose names carry no prefix.
        repo: ``owner/name`` on GitHub or a local git path.
        branch: branch to follow.
        paths: glob patterns of the files to sync.
        token_env: name of the environment variable that contains this repository's token.
        database_url: SQLAlchemy URL of its content store.
        table_prefix: prefix of its table names, so repositories can share one database.
    """

    name: str | None = None
    repo: str = ""
    branch: str = ""
    paths: tuple[str, ...] = ()
    token_env: str = ""
    database_url: str = ""
    table_prefix: str = ""

    @property
    def key_prefix(self) -> list[str]:
        """Return the asset key prefix: the name, or nothing for the single repository."""
        return [self.name] if self.name else []

    def qualified(self, base: str) -> str:
        """Return ``base`` prefixed with the repository name, as jobs and sensors are named."""
        return f"{self.name}_{base}" if self.name else base


def load_repository_configs(environ: Mapping[str, str] | None = None) -> list[RepositoryConfig]:
    """Read ``WRYTE_CONFIG`` if it is set, else return the single environment repository."""
    env = os.environ if environ is None else environ
    path = env.get("WRYTE_CONFIG", "").strip()
    if not path:
        return [RepositoryConfig()]
    return parse_repository_file(Path(path))


def parse_repository_file(path: Path) -> list[RepositoryConfig]:
    """Parse a repositories file, naming the file and entry of the first invalid value."""
    try:
        document = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigurationError(
            f"WRYTE_CONFIG file {str(path)!r} not found: create it or unset WRYTE_CONFIG"
        ) from error
    except YAMLError as error:
        raise ConfigurationError(f"{path}: invalid YAML: {error}") from error
    entries = document.get("repositories") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"{path}: expected a 'repositories' list with at least one entry")
    configs = [_parse_entry(path, index, entry) for index, entry in enumerate(entries, 1)]
    _check_unique(path, [config.name or "" for config in configs], "name")
    _check_unique(path, [f"{c.database_url}|{c.table_prefix}" for c in configs], "table_prefix")
    return configs


def _parse_entry(path: Path, index: int, entry: Any) -> RepositoryConfig:
    where = f"{path}: repository {index}"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: expected a mapping of settings")
    unknown = sorted(set(entry) - ALLOWED_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown setting {unknown[0]!r}; use {', '.join(sorted(ALLOWED_KEYS))}"
        )
    name = str(entry.get("name", ""))
    if not NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"{where}: invalid name {name!r}; use lowercase letters, digits and underscores, "
            "starting with a letter"
        )
    if not entry.get("repo"):
        raise ConfigurationError(f"{where} ({name}): missing 'repo'; set it to 'owner/name'")
    paths = entry.get("paths", [])
    if isinstance(paths, str):
        paths = [paths]
    return RepositoryConfig(
        name=name,
        repo=str(entry["repo"]),
        branch=str(entry.get("branch", "")),
        paths=tuple(str(pattern) for pattern in paths),
        token_env=str(entry.get("token_env", "")),
        database_url=str(entry.get("database_url", "")),
        table_prefix=str(entry.get("table_prefix", f"{name}_")),
    )


def _check_unique(path: Path, values: list[str], key: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigurationError(
                f"{path}: two repositories share the {key} {value.split('|')[-1]!r}; give each "
                "its own"
            )
        seen.add(value)
