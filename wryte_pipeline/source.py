"""Repository sources: what the sync reads a tree and blobs from.

Two implementations share one interface: ``GitHubSource`` (in ``github.py``) over the REST API,
and ``LocalGitSource`` here over a git repository on disk. Tests and the bundled sample use the
local one; the sensor and the asset never know which they have.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from wryte_pipeline.errors import RepositoryNotFoundError, SourceError

logger = logging.getLogger(__name__)

REGULAR_FILE_MODES = ("100644", "100755")
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"


@dataclass(frozen=True)
class TreeEntry:
    """One non-folder entry of a git tree: a file, a symlink or a submodule."""

    path: str
    mode: str
    sha: str
    size: int | None = None

    @property
    def skip_reason(self) -> str | None:
        """Explain why this entry is not synced, or None for a regular file."""
        if self.mode == SYMLINK_MODE:
            return "symlink: skipped, links are never followed"
        if self.mode == SUBMODULE_MODE:
            return "submodule: skipped, its files live in another repository"
        if self.mode not in REGULAR_FILE_MODES:
            return f"unsupported git file mode {self.mode}: skipped"
        return None


@dataclass(frozen=True)
class Head:
    """The branch head as the source last saw it.

    Attributes:
        commit_sha: the commit the branch points at, or None when the server returned
            304 Not Modified to a conditional request.
        etag: validator to send next time, when the source supports conditional requests.
    """

    commit_sha: str | None
    etag: str | None = None


@dataclass(frozen=True)
class FetchedBlob:
    """A blob's bytes, or the error that stopped its fetch after every attempt."""

    path: str
    sha: str
    data: bytes | None
    error: Exception | None = None
    attempts: int = 1


@dataclass(frozen=True)
class RateBudget:
    """GitHub's core rate limit as ``/rate_limit`` reports it."""

    limit: int
    remaining: int
    reset_at: float


class RepositorySource(Protocol):
    """Read access to one branch of one repository."""

    name: str
    branch: str | None

    @property
    def requests_used(self) -> int:
        """Count the requests this source made against the rate limit so far."""
        ...

    def check_access(self) -> None:
        """Raise ``AuthenticationError`` or ``RepositoryNotFoundError`` before any work."""
        ...

    def resolve_head(self, etag: str | None = None) -> Head:
        """Return the branch head, or ``Head(None)`` when unchanged since ``etag``."""
        ...

    def rate_budget(self) -> RateBudget | None:
        """Return the rate-limit budget, or None for a source without one."""
        ...

    def list_tree(self, commit_sha: str) -> list[TreeEntry]:
        """List every non-folder entry in the commit's tree."""
        ...

    def fetch_blobs(self, entries: Sequence[TreeEntry], commit_sha: str) -> Iterator[FetchedBlob]:
        """Yield each entry's bytes; the order may differ from ``entries``."""
        ...


def git_blob_sha(data: bytes) -> str:
    """Compute git's blob SHA-1 of ``data``, the id GitHub and ``git ls-tree`` report."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@lru_cache(maxsize=64)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def matches_patterns(path: str, patterns: Iterable[str]) -> bool:
    """Tell whether a repository path matches any glob, where ``**/`` spans folders."""
    return any(_pattern_regex(pattern).match(path) for pattern in patterns)


class LocalGitSource:
    """Reads a branch of a git repository on disk with ``git`` subprocesses."""

    def __init__(self, git_dir: Path, branch: str | None = None, name: str | None = None) -> None:
        """Open ``git_dir``; ``branch`` None follows the repository's checked-out branch."""
        self.git_dir = Path(git_dir).expanduser().resolve()
        self.name = name or str(self.git_dir)
        self.branch = branch
        self._lock = threading.Lock()

    @property
    def requests_used(self) -> int:
        """Return 0: a local repository spends no rate limit."""
        return 0

    def check_access(self) -> None:
        """Raise ``RepositoryNotFoundError`` unless the folder is a git repository."""
        if not self.git_dir.exists():
            raise RepositoryNotFoundError(
                f"local repository {str(self.git_dir)!r} not found: set WRYTE_REPO to an "
                "existing git repository or to 'owner/name' for GitHub"
            )
        self._git("rev-parse", "--git-dir")

    def resolve_head(self, etag: str | None = None) -> Head:
        """Return the branch's commit; the commit SHA itself serves as the validator."""
        self.check_access()
        ref = f"refs/heads/{self.branch}" if self.branch else "HEAD"
        commit = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        if not commit:
            where = f"branch {self.branch!r}" if self.branch else "a checked-out commit (HEAD)"
            raise RepositoryNotFoundError(
                f"{where} not found in {self.name!r}: set WRYTE_BRANCH to an existing branch"
            )
        if etag == commit:
            return Head(None, etag)
        return Head(commit, commit)

    def rate_budget(self) -> None:
        """Return None: a local repository has no rate limit."""
        return None

    def list_tree(self, commit_sha: str) -> list[TreeEntry]:
        """List the commit's tree with one ``git ls-tree -r`` call."""
        output = self._git("ls-tree", "-r", "-z", "-l", "--full-tree", commit_sha)
        entries = []
        for record in output.split("\0"):
            if not record:
                continue
            info, path = record.split("\t", 1)
            mode, _type, sha, size = info.split()
            entries.append(TreeEntry(path, mode, sha, None if size == "-" else int(size)))
        return entries

    def fetch_blobs(self, entries: Sequence[TreeEntry], commit_sha: str) -> Iterator[FetchedBlob]:
        """Yield blobs read through one ``git cat-file --batch`` process."""
        command = ["git", "-C", str(self.git_dir), "cat-file", "--batch"]
        with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
            assert process.stdin is not None and process.stdout is not None
            for entry in entries:
                process.stdin.write(entry.sha.encode() + b"\n")
                process.stdin.flush()
                header = process.stdout.readline().split()
                if len(header) < 3 or header[1] != b"blob":
                    error = SourceError(f"{entry.path}: blob {entry.sha} missing from {self.name}")
                    yield FetchedBlob(entry.path, entry.sha, None, error)
                    continue
                data = process.stdout.read(int(header[2]))
                process.stdout.read(1)
                yield FetchedBlob(entry.path, entry.sha, data)
            process.stdin.close()

    def _git(self, *args: str) -> str:
        command = ["git", "-C", str(self.git_dir), *args]
        result = subprocess.run(command, capture_output=True, check=False)
        if result.returncode != 0 and args[:2] != ("rev-parse", "--verify"):
            message = result.stderr.decode(errors="replace").strip()
            raise RepositoryNotFoundError(
                f"git {args[0]} failed in {self.name!r}: {message}; check that WRYTE_REPO is a "
                "git repository"
            )
        return result.stdout.decode("utf-8", errors="surrogateescape")
