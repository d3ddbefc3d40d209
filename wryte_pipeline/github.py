"""GitHub through PyGithub: branch head, recursive tree, blobs by SHA, and the ref's tarball.

Bodies come from the git blobs API or the tarball, never the contents API, which returns no
content for files over 1 MB. PyGithub's own waiting is turned off on purpose: by default it
pauses 0.25 s between requests and its retry may sleep until the rate-limit reset, up to an
hour. Here every retry is ours, bounded, and honours the server's ``Retry-After``.
"""

from __future__ import annotations

import base64
import json
import logging
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import requests
from github import Auth, Github, GithubException

from wryte_pipeline.errors import (
    AuthenticationError,
    RateLimitExhaustedError,
    RepositoryNotFoundError,
    SecondaryRateLimitError,
    SourceError,
    TransientSourceError,
)
from wryte_pipeline.source import FetchedBlob, Head, RateBudget, TreeEntry, git_blob_sha

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30
FETCH_ATTEMPTS = 3
FIRST_RETRY_DELAY_SECONDS = 1.5
MAX_RETRY_AFTER_SECONDS = 60.0
TARBALL_CHUNK_BYTES = 1 << 16

T = TypeVar("T")


class GitHubSource:
    """Reads one branch of a GitHub repository, counting the requests it spends."""

    def __init__(
        self,
        full_name: str,
        *,
        branch: str | None = None,
        token: str | None = None,
        api_url: str = "https://api.github.com",
        concurrency: int = 5,
        tarball_threshold: int = 50,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Prepare clients for ``full_name``; nothing is requested until a method is called."""
        self.name = full_name
        self.branch = branch
        self.api_url = api_url.rstrip("/")
        self.concurrency = concurrency
        self.tarball_threshold = tarball_threshold
        self._token = token
        self._sleep = sleep
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self._requests_used = 0
        self._limiter = AdaptiveLimit(concurrency)
        self._exhausted: RateLimitExhaustedError | None = None
        self._last_budget: RateBudget | None = None

    def __repr__(self) -> str:
        return f"GitHubSource({self.name!r}, branch={self.branch!r}, api_url={self.api_url!r})"

    @property
    def requests_used(self) -> int:
        """Count the requests made so far that cost rate limit (304 responses cost none)."""
        return self._requests_used

    @property
    def current_concurrency(self) -> int:
        """Return how many requests may be in flight now; secondary limits lower it."""
        return self._limiter.limit

    def check_access(self) -> None:
        """Fetch the repository once, so a bad token or name stops before any work."""
        status, body = self._request(f"/repos/{self.name}")
        if self.branch is None:
            self.branch = str(body["default_branch"])
        logger.info("repository %s readable; branch %s", self.name, self.branch)

    def resolve_head(self, etag: str | None = None) -> Head:
        """Return the branch head with a conditional request; a 304 means unchanged."""
        if self.branch is None:
            self.check_access()
        headers = {"If-None-Match": etag} if etag else {}
        status, body, response_headers = self._request_with_headers(
            f"/repos/{self.name}/branches/{self.branch}", headers=headers
        )
        if status == 304:
            return Head(None, etag)
        return Head(str(body["commit"]["sha"]), response_headers.get("etag"))

    def rate_budget(self) -> RateBudget:
        """Return the core rate limit, as the last response's headers reported it.

        Every API response carries the budget in its ``X-RateLimit-*`` headers, so after the
        head check this costs no request. Before any request it reads ``/rate_limit``, which
        GitHub does not count either.
        """
        if self._last_budget is not None:
            return self._last_budget
        requester = self._client().requester
        with self._errors("/rate_limit"):
            status, headers, text = requester.requestJson("GET", "/rate_limit")
        if status >= 400:
            raise _error_for_status(status, headers, _json_or_empty(text), "/rate_limit")
        core = _json_or_empty(text).get("resources", {}).get("core", {})
        return RateBudget(
            limit=int(core.get("limit", 0)),
            remaining=int(core.get("remaining", 0)),
            reset_at=float(core.get("reset", 0)),
        )

    def list_tree(self, commit_sha: str) -> list[TreeEntry]:
        """List the tree recursively, walking subtrees when GitHub truncates the response."""
        _status, body = self._request(f"/repos/{self.name}/git/trees/{commit_sha}?recursive=1")
        if not body.get("truncated"):
            return _entries_from_tree(body["tree"], prefix="")
        logger.warning("tree of %s truncated by GitHub; walking subtrees", commit_sha[:7])
        return self._walk_tree(commit_sha, prefix="")

    def fetch_blobs(self, entries: Sequence[TreeEntry], commit_sha: str) -> Iterator[FetchedBlob]:
        """Yield blobs from one tarball above the threshold, else from a bounded pool."""
        remaining = list(entries)
        if len(remaining) >= self.tarball_threshold:
            wanted = {entry.path: entry for entry in remaining}
            try:
                for blob in self._iter_tarball(commit_sha, wanted):
                    del wanted[blob.path]
                    yield blob
            except (SourceError, OSError, tarfile.TarError) as error:
                if isinstance(error, RateLimitExhaustedError):
                    self._exhausted = error
                logger.warning("tarball of %s failed (%s); fetching blobs", commit_sha[:7], error)
            remaining = list(wanted.values())
        yield from self._fetch_blob_pool(remaining)

    def _walk_tree(self, tree_sha: str, prefix: str) -> list[TreeEntry]:
        _status, body = self._request(f"/repos/{self.name}/git/trees/{tree_sha}")
        entries = _entries_from_tree(body["tree"], prefix)
        for item in body["tree"]:
            if item["type"] == "tree":
                entries.extend(self._walk_subtree(item["sha"], f"{prefix}{item['path']}/"))
        return entries

    def _walk_subtree(self, tree_sha: str, prefix: str) -> list[TreeEntry]:
        _status, body = self._request(f"/repos/{self.name}/git/trees/{tree_sha}?recursive=1")
        if body.get("truncated"):
            return self._walk_tree(tree_sha, prefix)
        return _entries_from_tree(body["tree"], prefix)

    def _fetch_blob_pool(self, entries: Sequence[TreeEntry]) -> Iterator[FetchedBlob]:
        if not entries:
            return
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="blob") as pool:
            yield from pool.map(self._fetch_blob, entries)

    def _fetch_blob(self, entry: TreeEntry) -> FetchedBlob:
        def fetch() -> bytes:
            with self._limiter:
                _status, body = self._request(f"/repos/{self.name}/git/blobs/{entry.sha}")
            return base64.b64decode(body["content"])

        if self._exhausted is not None:
            return FetchedBlob(entry.path, entry.sha, None, self._exhausted, 0)
        try:
            data, attempts = self._with_retries(fetch, what=entry.path)
        except RateLimitExhaustedError as error:
            self._exhausted = error
            return FetchedBlob(entry.path, entry.sha, None, error, 1)
        except SourceError as error:
            return FetchedBlob(entry.path, entry.sha, None, error, FETCH_ATTEMPTS)
        return FetchedBlob(entry.path, entry.sha, data, None, attempts)

    def _with_retries(self, call: Callable[[], T], what: str) -> tuple[T, int]:
        """Call with up to three attempts; a spent primary limit ends at once, unslept."""
        delay = FIRST_RETRY_DELAY_SECONDS
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                return call(), attempt
            except RateLimitExhaustedError:
                raise
            except TransientSourceError as error:
                if attempt == FETCH_ATTEMPTS:
                    raise
                if isinstance(error, SecondaryRateLimitError):
                    self._limiter.reduce()
                wait = min(max(delay, error.retry_after_seconds or 0.0), MAX_RETRY_AFTER_SECONDS)
                logger.info(
                    "%s: attempt %d failed (%s); retrying in %.1f s", what, attempt, error, wait
                )
                self._sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def _iter_tarball(
        self, commit_sha: str, wanted: dict[str, TreeEntry]
    ) -> Iterator[FetchedBlob]:
        with (
            self._open_tarball(commit_sha) as response,
            tarfile.open(fileobj=response.raw, mode="r|gz") as archive,
        ):
            for member in archive:
                path = safe_member_path(member)
                entry = wanted.get(path) if path is not None else None
                if path is None or entry is None or not member.isfile():
                    continue
                extracted = archive.extractfile(member)
                data = extracted.read() if extracted else b""
                # An export filter (.gitattributes export-subst) can change a file in the
                # archive; such a file is left in `wanted` and fetched as a blob instead.
                if git_blob_sha(data) == entry.sha:
                    yield FetchedBlob(path, entry.sha, data)

    def _open_tarball(self, commit_sha: str) -> requests.Response:
        url = f"{self.api_url}/repos/{self.name}/tarball/{commit_sha}"
        headers = {"Accept": "application/vnd.github+json", **self._auth_header()}
        with self._errors(url):
            response = requests.get(
                url, headers=headers, stream=True, timeout=REQUEST_TIMEOUT_SECONDS
            )
        self._count(1)
        if response.status_code != 200:
            response.close()
            raise _error_for_status(
                response.status_code, dict(response.headers), {"message": response.reason}, url
            )
        response.raw.decode_content = False
        return response

    def _request(self, path: str) -> tuple[int, dict[str, Any]]:
        status, body, _headers = self._request_with_headers(path)
        return status, body

    def _request_with_headers(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        requester = self._client().requester
        with self._errors(path):
            status, response_headers, text = requester.requestJson("GET", path, headers=headers)
        if status != 304:
            self._count(1)
        lowered = {key.lower(): value for key, value in response_headers.items()}
        self._last_budget = _budget_from_headers(lowered) or self._last_budget
        if status >= 400:
            raise _error_for_status(status, response_headers, _json_or_empty(text), path)
        body = _json_or_empty(text) if status != 304 else {}
        return status, body, lowered

    def _errors(self, what: str) -> Any:
        return _NetworkErrors(f"{self.api_url}{what}" if what.startswith("/") else what)

    def _client(self) -> Github:
        client: Github | None = getattr(self._local, "client", None)
        if client is None:
            auth = Auth.Token(self._token) if self._token else None
            client = Github(
                auth=auth,
                base_url=self.api_url,
                timeout=REQUEST_TIMEOUT_SECONDS,
                retry=None,
                seconds_between_requests=None,
                seconds_between_writes=None,
                per_page=100,
            )
            self._local.client = client
        return client

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token}"} if self._token else {}

    def _count(self, requests_made: int) -> None:
        with self._count_lock:
            self._requests_used += requests_made


class AdaptiveLimit:
    """A semaphore whose limit halves on each secondary rate limit, down to one.

    GitHub's secondary limit punishes concurrency, so once it responds, the rest of the batch
    runs with fewer requests in flight.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self._in_use = 0
        self._condition = threading.Condition()

    def reduce(self) -> None:
        """Halve the limit, keeping at least one request in flight."""
        with self._condition:
            if self.limit > 1:
                self.limit = max(self.limit // 2, 1)
                logger.warning("secondary rate limit: %d requests in flight from now", self.limit)

    def __enter__(self) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._in_use < self.limit)
            self._in_use += 1

    def __exit__(self, *_exc: object) -> None:
        with self._condition:
            self._in_use -= 1
            self._condition.notify_all()


class _NetworkErrors:
    """Map connection failures from PyGithub and requests onto ``TransientSourceError``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, _trace: Any) -> Literal[False]:
        if isinstance(error, requests.RequestException | ConnectionError | TimeoutError):
            raise TransientSourceError(
                f"request to {self.url} failed: {error}; check WRYTE_GITHUB_API_URL and the "
                "network"
            ) from error
        if isinstance(error, GithubException):
            status_error = _error_for_status(
                error.status, error.headers or {}, error.data, self.url
            )
            raise status_error from error
        return False


def _error_for_status(status: int, headers: Any, data: Any, url: str) -> SourceError:
    headers = {str(key).lower(): str(value) for key, value in dict(headers or {}).items()}
    message = data.get("message", "") if isinstance(data, dict) else str(data)
    if status == 401:
        return AuthenticationError(
            f"GitHub rejected the token (401 {message or 'Bad credentials'}) for {url}: set "
            "GITHUB_TOKEN to a valid token with read access to the repository's contents"
        )
    if status in (403, 429) and _is_primary_limit(headers, message):
        reset_at = float(headers.get("x-ratelimit-reset", time.time() + 60))
        wait = max(reset_at - time.time(), 0.0)
        return RateLimitExhaustedError(
            f"GitHub rate limit exhausted ({status} {message}) for {url}; it resets in "
            f"{wait:.0f} s",
            reset_at=reset_at,
            retry_after_seconds=wait,
        )
    if status in (403, 429) and _is_rate_limited(headers, message):
        wait = _rate_limit_wait(headers)
        return SecondaryRateLimitError(
            f"GitHub secondary rate limit hit ({status} {message}) for {url}; retry in "
            f"{wait:.0f} s",
            retry_after_seconds=wait,
        )
    if status == 403:
        return AuthenticationError(
            f"GitHub denied access (403 {message}) to {url}: check that GITHUB_TOKEN may "
            "read this repository"
        )
    if status == 404:
        return RepositoryNotFoundError(
            f"not found (404) at {url}: check WRYTE_REPO and WRYTE_BRANCH, and that "
            "GITHUB_TOKEN can see the repository"
        )
    if status >= 500 or status == 429:
        return TransientSourceError(f"GitHub returned {status} for {url}: {message}".rstrip(": "))
    return SourceError(f"GitHub returned {status} for {url}: {message}")


def _budget_from_headers(headers: dict[str, str]) -> RateBudget | None:
    if headers.get("x-ratelimit-resource", "core") != "core":
        return None
    try:
        return RateBudget(
            limit=int(headers["x-ratelimit-limit"]),
            remaining=int(headers["x-ratelimit-remaining"]),
            reset_at=float(headers["x-ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        return None


def _is_primary_limit(headers: dict[str, str], message: str) -> bool:
    return headers.get("x-ratelimit-remaining") == "0" and "secondary" not in message.lower()


def _is_rate_limited(headers: dict[str, str], message: str) -> bool:
    return (
        headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in headers
        or "rate limit" in message.lower()
    )


def _rate_limit_wait(headers: dict[str, str]) -> float:
    if "retry-after" in headers:
        try:
            return max(float(headers["retry-after"]), 0.0)
        except ValueError:
            pass
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        return max(float(headers["x-ratelimit-reset"]) - time.time(), 0.0)
    return 60.0


def _json_or_empty(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"message": text[:200]}
    return value if isinstance(value, dict) else {"items": value}


def _entries_from_tree(items: list[dict[str, Any]], prefix: str) -> list[TreeEntry]:
    return [
        TreeEntry(f"{prefix}{item['path']}", str(item["mode"]), str(item["sha"]), item.get("size"))
        for item in items
        if item["type"] != "tree"
    ]


def safe_member_path(member: tarfile.TarInfo) -> str | None:
    """Strip the archive's top folder; reject names that are absolute or climb with ``..``."""
    name = member.name
    if name.startswith("/") or "\\" in name:
        return None
    parts = name.split("/")
    if len(parts) < 2 or any(part in ("..", "") for part in parts[1:]):
        return None
    return "/".join(parts[1:])
