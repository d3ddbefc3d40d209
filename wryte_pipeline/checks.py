"""Asset checks a site owner can trust.

The table equals the repository, published slugs are unique, and the last batch parsed every
file.
"""

from dataclasses import dataclass

import dagster as dg

from wryte_pipeline.assets import DEFAULT_ASSETS, RepositoryAssets
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.source import matches_patterns

MAX_LISTED_PATHS = 20


@dataclass(frozen=True)
class RepositoryChecks:
    """The asset checks of one repository."""

    content_matches_repository: dg.AssetChecksDefinition
    last_batch_parsed: dg.AssetChecksDefinition
    published_slugs_unique: dg.AssetChecksDefinition

    @property
    def all(self) -> list[dg.AssetChecksDefinition]:
        """Return every check of the repository."""
        return [
            self.content_matches_repository,
            self.last_batch_parsed,
            self.published_slugs_unique,
        ]


def build_checks(assets: RepositoryAssets) -> RepositoryChecks:
    """Define the asset checks of one repository."""
    config = assets.config

    @dg.asset_check(
        asset=assets.content_table, description="Same paths and blob SHAs as the branch head."
    )
    def content_matches_repository(wryte: WryteResource) -> dg.AssetCheckResult:
        return check_matches_repository(wryte.for_repository(config))

    @dg.asset_check(asset=assets.content_table, description="Every file of the last batch parsed.")
    def last_batch_parsed(wryte: WryteResource) -> dg.AssetCheckResult:
        return check_last_batch_parsed(wryte.for_repository(config))

    @dg.asset_check(
        asset=assets.published_documents, description="No two published documents share a slug."
    )
    def published_slugs_unique(wryte: WryteResource) -> dg.AssetCheckResult:
        return check_slugs_unique(wryte.for_repository(config))

    return RepositoryChecks(content_matches_repository, last_batch_parsed, published_slugs_unique)


def check_matches_repository(wryte: WryteResource) -> dg.AssetCheckResult:
    """Compare `documents` with one tree request at the branch head.

    Files that failed to parse are reported here too: the table lacks them, so it does not
    equal the repository until they are fixed.
    """
    settings = wryte.settings()
    source = wryte.open_source()
    head = source.resolve_head()
    assert head.commit_sha is not None
    expected = {
        entry.path: entry.sha
        for entry in source.list_tree(head.commit_sha)
        if entry.skip_reason is None and matches_patterns(entry.path, settings.path_patterns)
    }
    stored = wryte.open_store().stored_blobs()
    missing = sorted(path for path in expected if path not in stored)
    stale = sorted(
        path for path, sha in expected.items() if path in stored and stored[path] != sha
    )
    extra = sorted(path for path in stored if path not in expected)
    return dg.AssetCheckResult(
        passed=not (missing or stale or extra),
        metadata={
            "head_commit": head.commit_sha,
            "files_in_repository": len(expected),
            "missing": len(missing),
            "stale": len(stale),
            "extra": len(extra),
            "paths": dg.MetadataValue.md(_path_table(missing, stale, extra)),
        },
    )


def check_slugs_unique(wryte: WryteResource) -> dg.AssetCheckResult:
    """Name every slug that two or more published documents use, with their files."""
    duplicates = wryte.open_store().duplicate_published_slugs()
    lines = [
        f"- `{slug}`: " + ", ".join(f"`{path}`" for path in paths)
        for slug, paths in list(duplicates.items())[:MAX_LISTED_PATHS]
    ]
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={
            "duplicate_slugs": len(duplicates),
            "files": dg.MetadataValue.md("\n".join(lines) or "none"),
        },
    )


def check_last_batch_parsed(wryte: WryteResource) -> dg.AssetCheckResult:
    """Name the files whose front matter could not be parsed in the latest batch."""
    store = wryte.open_store()
    batch = store.latest_batch()
    rejected = (
        []
        if batch is None
        else [
            row
            for row in store.outcomes(batch.id)
            if row["status"] == "failed" and not row["retryable"]
        ]
    )
    lines = [f"- {row['error']}" for row in rejected[:MAX_LISTED_PATHS]]
    return dg.AssetCheckResult(
        passed=not rejected,
        metadata={
            "batch_id": batch.id if batch else "",
            "rejected_files": len(rejected),
            "errors": dg.MetadataValue.md("\n".join(lines) or "none"),
        },
    )


def _path_table(missing: list[str], stale: list[str], extra: list[str]) -> str:
    rows = [("missing", path) for path in missing[:MAX_LISTED_PATHS]]
    rows += [("stale", path) for path in stale[:MAX_LISTED_PATHS]]
    rows += [("extra", path) for path in extra[:MAX_LISTED_PATHS]]
    if not rows:
        return "The table equals the repository."
    lines = ["| difference | path |", "|---|---|"]
    lines += [f"| {kind} | `{path}` |" for kind, path in rows]
    return "\n".join(lines)


DEFAULT_CHECKS = build_checks(DEFAULT_ASSETS)
