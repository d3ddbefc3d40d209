"""Exceptions raised by Wryte Pipeline.

The tree::

    WryteError                    base class; the CLI prints it on one line
    ├── ConfigurationError        a setting is missing or invalid (CLI exit 2)
    ├── SourceError               the repository could not be read
    │   ├── AuthenticationError   the token was rejected or lacks access (CLI exit 2)
    │   ├── RepositoryNotFoundError  repository or branch not found (CLI exit 2)
    │   └── TransientSourceError  worth retrying: 5xx, reset, timeout
    │       ├── SecondaryRateLimitError  GitHub asked to slow down (Retry-After)
    │       └── RateLimitExhaustedError  the hourly budget is spent until its reset
    └── DocumentError             one file cannot be stored; the others go on
        ├── FrontMatterError      front matter or encoding is invalid (path and line)
        └── SkippedDocumentError  not a page: LFS pointer, over the size ceiling

Every message names the value at fault and, where there is one, the fix.
"""

from __future__ import annotations


class WryteError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(WryteError):
    """A setting is missing or invalid."""


class SourceError(WryteError):
    """The repository could not be read."""


class AuthenticationError(SourceError):
    """The token was rejected or does not grant access to the repository."""


class RepositoryNotFoundError(SourceError):
    """The repository, branch or commit does not exist or is not visible."""


class TransientSourceError(SourceError):
    """A failure worth retrying later.

    Attributes:
        retry_after_seconds: the wait the server asked for, when it sent one.
    """

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class SecondaryRateLimitError(TransientSourceError):
    """GitHub's secondary rate limit: too many requests at once; wait ``Retry-After``."""


class RateLimitExhaustedError(TransientSourceError):
    """The primary rate limit is spent; no request succeeds before ``reset_at``.

    Attributes:
        reset_at: Unix time at which GitHub restores the budget.
    """

    def __init__(self, message: str, reset_at: float, retry_after_seconds: float) -> None:
        super().__init__(message, retry_after_seconds)
        self.reset_at = reset_at


class DocumentError(WryteError):
    """One file cannot be stored; every other file is still processed.

    Attributes:
        path: the file's path in the repository.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


class FrontMatterError(DocumentError):
    """A file's front matter or text encoding is invalid.

    The message reads ``<path>, line <N>: <what is wrong>; <what to do>``.

    Attributes:
        line: 1-based line number in the file where the fault was found.
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        Exception.__init__(self, f"{path}, line {line}: {message}")
        self.path = path
        self.line = line
        self.reason = message


class SkippedDocumentError(DocumentError):
    """A file that is deliberately not stored, such as a Git LFS pointer."""
