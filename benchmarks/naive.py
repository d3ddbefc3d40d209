"""Naive baselines: PyGithub's contents API per file, one INSERT per file into SQLite.

Run ``python -m benchmarks.naive {sequential,flood} --api-url URL --repo OWNER/NAME --ref SHA
--database FILE``. It prints one JSON line of counts and timings on stdout.

Both keep PyGithub 2.10's defaults apart from ``base_url``: a client waits 0.25 s between its
requests, and its GithubRetry retries 403 and 5xx responses up to 10 times, sleeping for
``Retry-After`` when the response has one. On top of that, a file whose fetch still fails is
tried again after a sleep, as a hand-written sync script would do. Listing the files takes two
requests (repository, recursive tree); each file then costs one contents request.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import frontmatter
import requests
from github import Github, GithubException
from github.Repository import Repository

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")
MAX_ATTEMPTS = 3
RETRY_SLEEP_SECONDS = 1.0
# The flood stops retrying after this long, so a herd that never drains still ends.
FLOOD_DEADLINE_SECONDS = 300.0
LISTING_REQUESTS = 2

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS documents (
    path TEXT PRIMARY KEY,
    blob_sha TEXT NOT NULL,
    title TEXT,
    front_matter TEXT NOT NULL,
    body TEXT NOT NULL
)
"""
_INSERT = "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)"


class DocumentTable:
    """A SQLite table that gets one committed INSERT per file. Threads share it under a lock."""

    def __init__(self, database: Path) -> None:
        """Open ``database`` and create the table."""
        self._connection = sqlite3.connect(database, check_same_thread=False)
        self._connection.execute(_CREATE_TABLE)
        self._lock = threading.Lock()

    def insert(self, path: str, blob_sha: str, data: bytes) -> None:
        """Parse the front matter with python-frontmatter and insert the row."""
        post = frontmatter.loads(data.decode("utf-8"))
        title = post.metadata.get("title")
        row = (
            path,
            blob_sha,
            str(title) if title is not None else None,
            json.dumps(post.metadata, default=str),
            post.content,
        )
        with self._lock:
            self._connection.execute(_INSERT, row)
            self._connection.commit()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def list_markdown_paths(client: Github, full_name: str, ref: str) -> tuple[Repository, list[str]]:
    """List the Markdown paths at ``ref`` with two requests.

    Returns the repository and the sorted paths.
    """
    repo = client.get_repo(full_name)
    tree = repo.get_git_tree(ref, recursive=True)
    paths = [
        entry.path
        for entry in tree.tree
        if entry.type == "blob" and entry.path.endswith(MARKDOWN_SUFFIXES)
    ]
    return repo, sorted(paths)


def sync_file(repo: Repository, path: str, ref: str, table: DocumentTable, deadline: float) -> str:
    """Fetch one file through the contents API and insert it.

    Returns the outcome: ``stored``, ``fetch_failed`` or ``parse_failed``.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            content = repo.get_contents(path, ref=ref)
            break
        except (GithubException, requests.RequestException):
            if attempt == MAX_ATTEMPTS or time.monotonic() > deadline:
                return "fetch_failed"
            time.sleep(RETRY_SLEEP_SECONDS)
    assert not isinstance(content, list), f"{path} is a folder"
    try:
        table.insert(path, content.sha, content.decoded_content)
    except Exception:  # a naive loop skips any file it cannot parse or store
        return "parse_failed"
    return "stored"


def choose_sample(paths: Sequence[str], size: int | None) -> list[str]:
    """Return ``size`` paths spread evenly over ``paths``, or all of them."""
    if size is None or size >= len(paths):
        return list(paths)
    step = len(paths) / size
    return [paths[int(index * step)] for index in range(size)]


def run_sequential(args: argparse.Namespace) -> dict[str, Any]:
    """Sync the files one after another with one PyGithub client."""
    table = DocumentTable(args.database)
    start = time.monotonic()
    client = Github(base_url=args.api_url)
    repo, paths = list_markdown_paths(client, args.repo, args.ref)
    listed = time.monotonic()
    sample = choose_sample(paths, args.sample)
    outcomes = Counter(
        sync_file(repo, path, args.ref, table, deadline=float("inf")) for path in sample
    )
    finished = time.monotonic()
    table.close()
    return _summary(paths, sample, outcomes, listed - start, finished - listed)


def run_flood(args: argparse.Namespace) -> dict[str, Any]:
    """Request every file at once, one thread and one PyGithub client per file."""
    table = DocumentTable(args.database)
    start = time.monotonic()
    _repo, paths = list_markdown_paths(Github(base_url=args.api_url), args.repo, args.ref)
    listed = time.monotonic()
    deadline = listed + FLOOD_DEADLINE_SECONDS

    def sync_with_own_client(path: str) -> str:
        # Every thread builds its own PyGithub client, so no client state is shared.
        repo = Github(base_url=args.api_url).get_repo(args.repo, lazy=True)
        return sync_file(repo, path, args.ref, table, deadline)

    with ThreadPoolExecutor(max_workers=max(len(paths), 1)) as pool:
        outcomes = Counter(pool.map(sync_with_own_client, paths))
    finished = time.monotonic()
    table.close()
    return _summary(paths, paths, outcomes, listed - start, finished - listed)


def _summary(
    paths: Sequence[str],
    attempted: Sequence[str],
    outcomes: Counter[str],
    listing_seconds: float,
    files_seconds: float,
) -> dict[str, Any]:
    return {
        "files": len(paths),
        "attempted": len(attempted),
        "stored": outcomes["stored"],
        "fetch_failed": outcomes["fetch_failed"],
        "parse_failed": outcomes["parse_failed"],
        "listing_requests": LISTING_REQUESTS,
        "listing_seconds": listing_seconds,
        "files_seconds": files_seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one baseline and print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.naive", description=__doc__)
    parser.add_argument("mode", choices=("sequential", "flood"))
    parser.add_argument("--api-url", required=True, help="GitHub REST base URL")
    parser.add_argument("--repo", required=True, help="repository as owner/name")
    parser.add_argument("--ref", required=True, help="commit SHA to read")
    parser.add_argument("--database", required=True, type=Path, help="SQLite file to write")
    parser.add_argument(
        "--sample",
        type=int,
        help="sequential mode only: sync this many files, spread over the tree",
    )
    args = parser.parse_args(argv)
    run = run_sequential if args.mode == "sequential" else run_flood
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
