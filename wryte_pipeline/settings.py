"""Settings read from the environment, with a local default for every one.

With no variable set, the pipeline syncs the sample repository shipped in this package into a
SQLite file under ``.wryte/``, so a fresh clone runs with no token and no server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wryte_pipeline.errors import ConfigurationError

SAMPLE_BUNDLE = Path(__file__).parent / "sample" / "hugo-docs.bundle"
SAMPLE_REPOSITORY = "sample"
DEFAULT_PATH_PATTERNS = ("**/*.md", "**/*.markdown", "**/*.mdx")
DEFAULT_BRANCH = "main"
DEFAULT_MAX_PATHS_PER_TICK = 2000
DEFAULT_CONCURRENCY = 5
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
DEFAULT_TARBALL_THRESHOLD = 50
DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS = 15 * 60
DEFAULT_LOCK_WAIT_SECONDS = 60
DEFAULT_MAX_FAILED_FILE_RUNS = 20
GITHUB_REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Settings:
    """Where to read Markdown from and where to store it.

    Attributes:
        repository: ``owner/name`` on GitHub, a path to a local git repository, or ``sample``.
        branch: branch to follow; None means the repository's default branch.
        token: GitHub token; never logged or stored.
        api_url: GitHub REST base URL (GitHub Enterprise, or a local fake server).
        database_url: SQLAlchemy URL of the content store.
        path_patterns: glob patterns of the files to sync, matched against the full path.
        home: folder for local state (the SQLite file, the sample clone).
        max_paths_per_tick: most paths one sensor tick queues; the rest follow on later ticks.
        concurrency: most GitHub requests one run has in flight at once.
        max_file_bytes: files larger than this get a `skipped` outcome naming the ceiling.
        tarball_threshold: from this many files to fetch, one tarball replaces blob requests.
        rate_limit_reserve: requests always left unspent; None means 50 or 10 % of the limit,
            whichever is larger.
        max_rate_limit_wait_seconds: maximum wait for a rate-limit reset within a run. A
            longer wait ends the batch and defers the remaining files to the next sync.
        table_prefix: prefix of the content table names, so repositories can share a database.
        site_timezone: IANA time zone for front matter times written without an offset.
        lock_wait_seconds: how long a run waits for another sync of the same repository to
            finish before it stops without writing.
        max_failed_file_runs: maximum number of files of one batch that get a failed run, so
            Dagster's partitions page shows them failed; 0 turns these runs off.
    """

    repository: str = SAMPLE_REPOSITORY
    branch: str | None = None
    token: str | None = field(default=None, repr=False)
    api_url: str = "https://api.github.com"
    database_url: str = ""
    path_patterns: tuple[str, ...] = DEFAULT_PATH_PATTERNS
    home: Path = Path(".wryte")
    max_paths_per_tick: int = DEFAULT_MAX_PATHS_PER_TICK
    concurrency: int = DEFAULT_CONCURRENCY
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    tarball_threshold: int = DEFAULT_TARBALL_THRESHOLD
    rate_limit_reserve: int | None = None
    max_rate_limit_wait_seconds: int = DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS
    lock_wait_seconds: int = DEFAULT_LOCK_WAIT_SECONDS
    max_failed_file_runs: int = DEFAULT_MAX_FAILED_FILE_RUNS
    site_timezone: str = "UTC"
    table_prefix: str = ""

    @property
    def site_tzinfo(self) -> ZoneInfo:
        """Return the site time zone as a ``tzinfo``."""
        return ZoneInfo(self.site_timezone)

    def reserve_for(self, limit: int) -> int:
        """Return how many requests of a ``limit``-sized budget a batch must leave unspent."""
        if self.rate_limit_reserve is not None:
            return self.rate_limit_reserve
        return max(50, limit // 10)

    @property
    def is_github(self) -> bool:
        """Whether the repository is read through the GitHub REST API."""
        return self.repository != SAMPLE_REPOSITORY and not _looks_like_path(self.repository)

    @property
    def resolved_database_url(self) -> str:
        """Return the content store URL, defaulting to a SQLite file in ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'content.db').resolve()}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``WRYTE_*`` variables and ``GITHUB_TOKEN``, checking each value."""
    env = os.environ if environ is None else environ
    repository = env.get("WRYTE_REPO", "").strip() or SAMPLE_REPOSITORY
    _check_repository(repository)
    home = Path(env.get("WRYTE_HOME", ".wryte"))
    api_url = env.get("WRYTE_GITHUB_API_URL", "").strip().rstrip("/") or "https://api.github.com"
    if not api_url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"invalid WRYTE_GITHUB_API_URL {api_url!r}: set it to the REST API's base URL, "
            "such as https://github.example.com/api/v3"
        )
    site_timezone = env.get("WRYTE_SITE_TIMEZONE", "").strip() or "UTC"
    _check_timezone(site_timezone)
    return Settings(
        site_timezone=site_timezone,
        repository=repository,
        branch=env.get("WRYTE_BRANCH", "").strip() or None,
        token=env.get("GITHUB_TOKEN", "").strip() or None,
        api_url=api_url,
        database_url=env.get("WRYTE_DATABASE_URL", "").strip(),
        path_patterns=_parse_patterns(env.get("WRYTE_PATHS", "")),
        home=home,
        max_paths_per_tick=_positive_int(
            env, "WRYTE_MAX_PATHS_PER_TICK", DEFAULT_MAX_PATHS_PER_TICK
        ),
        concurrency=_positive_int(env, "WRYTE_CONCURRENCY", DEFAULT_CONCURRENCY),
        max_file_bytes=_positive_int(env, "WRYTE_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
        tarball_threshold=_positive_int(env, "WRYTE_TARBALL_THRESHOLD", DEFAULT_TARBALL_THRESHOLD),
        rate_limit_reserve=_optional_int(env, "WRYTE_RATE_LIMIT_RESERVE"),
        max_rate_limit_wait_seconds=_positive_int(
            env, "WRYTE_MAX_RATE_LIMIT_WAIT_SECONDS", DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS
        ),
        lock_wait_seconds=_optional_int(env, "WRYTE_LOCK_WAIT_SECONDS")
        or DEFAULT_LOCK_WAIT_SECONDS,
        max_failed_file_runs=_int_or_default(
            env, "WRYTE_MAX_FAILED_FILE_RUNS", DEFAULT_MAX_FAILED_FILE_RUNS
        ),
    )


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigurationError(
            f"invalid WRYTE_SITE_TIMEZONE {name!r}: use an IANA time zone name such as "
            "'Europe/Paris' or 'UTC'"
        ) from error


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or Path(value).expanduser().exists()


def _check_repository(value: str) -> None:
    if value == SAMPLE_REPOSITORY or _looks_like_path(value):
        return
    if not GITHUB_REPOSITORY_PATTERN.match(value):
        raise ConfigurationError(
            f"invalid WRYTE_REPO {value!r}: set it to 'owner/name' for GitHub or to the path "
            "of a local git repository"
        )


def _parse_patterns(raw: str) -> tuple[str, ...]:
    patterns = tuple(part.strip() for part in re.split(r"[,\n]", raw) if part.strip())
    return patterns or DEFAULT_PATH_PATTERNS


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigurationError(f"invalid {name} {raw!r}: set it to a whole number, 0 or more")
    return int(raw)


def _int_or_default(env: Mapping[str, str], name: str, default: int) -> int:
    value = _optional_int(env, name)
    return default if value is None else value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"invalid {name} {raw!r}: set it to a whole number above 0")
    return value
