"""The floor: one tarball request, the pipeline's parser, one bulk insert, and no Dagster.

Run ``python -m benchmarks.floor --api-url URL --repo OWNER/NAME --ref SHA --database-url URL``.
It prints one JSON line of counts and timings on stdout. Rows go into the pipeline's own
``documents`` table through ``ContentStore``, so the floor writes what the pipeline writes,
without planning, outcome rows, per-file retries or Dagster.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests

from wryte_pipeline.errors import DocumentError
from wryte_pipeline.front_matter import parse_document
from wryte_pipeline.settings import DEFAULT_PATH_PATTERNS
from wryte_pipeline.source import git_blob_sha, matches_patterns
from wryte_pipeline.store import ContentStore
from wryte_pipeline.sync import document_row

REQUEST_TIMEOUT_SECONDS = 60


def iter_tarball(api_url: str, full_name: str, ref: str) -> Iterator[tuple[str, bytes]]:
    """Stream the repository's tarball at ``ref`` and yield each Markdown file's path and bytes."""
    url = f"{api_url}/repos/{full_name}/tarball/{ref}"
    with requests.get(url, stream=True, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        response.raise_for_status()
        with tarfile.open(fileobj=response.raw, mode="r|gz") as archive:
            for member in archive:
                # Members sit below one top folder named after the repository and commit.
                path = member.name.partition("/")[2]
                if not member.isfile() or not matches_patterns(path, DEFAULT_PATH_PATTERNS):
                    continue
                extracted = archive.extractfile(member)
                yield path, extracted.read() if extracted else b""


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Fetch, parse and insert every Markdown file, and return counts and timings."""
    start = time.monotonic()
    rows: list[dict[str, Any]] = []
    failed = 0
    for path, data in iter_tarball(args.api_url, args.repo, args.ref):
        try:
            document = parse_document(path, data)
        except DocumentError:
            failed += 1
            continue
        rows.append(document_row(path, git_blob_sha(data), args.ref, document))
    parsed = time.monotonic()
    store = ContentStore(args.database_url)
    store.write_results(rows, (), ())
    store.dispose()
    finished = time.monotonic()
    return {
        "files": len(rows) + failed,
        "stored": len(rows),
        "parse_failed": failed,
        "fetch_parse_seconds": parsed - start,
        "insert_seconds": finished - parsed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the floor and print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--api-url", required=True, help="GitHub REST base URL")
    parser.add_argument("--repo", required=True, help="repository as owner/name")
    parser.add_argument("--ref", required=True, help="commit SHA to read")
    parser.add_argument("--database-url", required=True, help="SQLAlchemy URL of the store")
    args = parser.parse_args(argv)
    print(json.dumps(run_floor(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
