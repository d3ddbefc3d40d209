"""Plan a sync: compare the tree's blob SHAs with the stored ones and list the work.

Pure functions over mappings, so the sensor, the assets and the CLI share one diff and the
tests need neither Dagster nor a server.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from wryte_pipeline.source import TreeEntry, matches_patterns

Action = Literal["upsert", "delete", "rename", "skip"]


@dataclass(frozen=True)
class PlannedItem:
    """One path's work in a batch.

    Attributes:
        action: ``upsert`` (new or changed), ``delete``, ``rename`` (same blob SHA under a new
            path, ``previous_path`` leaves), or ``skip`` (symlink, submodule: reported only).
        path: the file's path in the repository.
        sha: blob SHA at the head commit; None for a deletion.
        size: blob size in bytes, when the tree reported it.
        previous_path: for a rename, the path the document moves from.
        reason: for a skip, why the path is not synced. A skip also removes a document
            stored under that path, as when a file was replaced by a symlink.
    """

    action: Action
    path: str
    sha: str | None = None
    size: int | None = None
    previous_path: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the item as a JSON-safe dict, dropping empty fields."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PlannedItem:
        """Rebuild an item stored by ``to_json``."""
        return cls(**value)

    @property
    def touched_paths(self) -> tuple[str, ...]:
        """Paths whose documents this item changes."""
        if self.previous_path:
            return (self.path, self.previous_path)
        return (self.path,)


@dataclass(frozen=True)
class Plan:
    """The work between the stored state and one commit, capped for one tick.

    Attributes:
        items: the work to queue now, sorted by path.
        pending: how many more items wait for a later tick because of the cap.
        unchanged: files whose stored blob SHA already equals the tree's.
    """

    items: list[PlannedItem]
    pending: int
    unchanged: int

    @property
    def complete(self) -> bool:
        """Whether this plan covers every difference, so nothing waits for a later tick."""
        return self.pending == 0


def plan_sync(
    entries: Sequence[TreeEntry],
    stored: Mapping[str, str],
    settled: Mapping[str, str],
    patterns: Sequence[str],
    max_items: int,
) -> Plan:
    """List the new, changed, renamed, deleted and skipped paths, capped at ``max_items``.

    ``stored`` maps path to the stored blob SHA; ``settled`` maps path to a blob SHA whose
    failure or skip is final, so that blob is not requested again until it changes. A deletion
    and an addition with the same blob SHA pair up as a rename.
    """
    matching = [entry for entry in entries if matches_patterns(entry.path, patterns)]
    files = {entry.path: entry for entry in matching if entry.skip_reason is None}
    changed = [
        entry
        for entry in files.values()
        if stored.get(entry.path) != entry.sha and settled.get(entry.path) != entry.sha
    ]
    special = {entry.path for entry in matching if entry.skip_reason is not None}
    deleted = sorted(path for path in stored if path not in files and path not in special)
    items = _pair_renames(changed, deleted, stored)
    items.extend(_skips(matching, settled))
    items.sort(key=lambda item: item.path)
    unchanged = sum(1 for path, entry in files.items() if stored.get(path) == entry.sha)
    return Plan(items[:max_items], max(len(items) - max_items, 0), unchanged)


def _pair_renames(
    changed: list[TreeEntry], deleted: list[str], stored: Mapping[str, str]
) -> list[PlannedItem]:
    added_by_sha: dict[str, list[TreeEntry]] = {}
    for entry in changed:
        if entry.path not in stored:
            added_by_sha.setdefault(entry.sha, []).append(entry)
    items: list[PlannedItem] = []
    renamed: set[str] = set()
    for path in deleted:
        candidates = added_by_sha.get(stored[path])
        if candidates:
            entry = candidates.pop(0)
            renamed.add(entry.path)
            items.append(PlannedItem("rename", entry.path, entry.sha, entry.size, path))
        else:
            items.append(PlannedItem("delete", path))
    for entry in changed:
        if entry.path not in renamed:
            items.append(PlannedItem("upsert", entry.path, entry.sha, entry.size))
    return items


def _skips(entries: Sequence[TreeEntry], settled: Mapping[str, str]) -> list[PlannedItem]:
    return [
        PlannedItem("skip", entry.path, entry.sha, entry.size, reason=entry.skip_reason)
        for entry in entries
        if entry.skip_reason is not None and settled.get(entry.path) != entry.sha
    ]


def fit_budget(plan: Plan, available_requests: int, tarball_threshold: int) -> Plan:
    """Trim a plan to what the rate-limit budget allows; the rest waits for a later tick.

    Deletions and skips cost no request. Files to fetch cost one tarball request when there
    are at least ``tarball_threshold`` of them, else one blob request each.
    """
    fetches = [item for item in plan.items if item.action in ("upsert", "rename")]
    cost = 1 if len(fetches) >= tarball_threshold else len(fetches)
    if cost <= available_requests:
        return plan
    kept_fetches = {id(item) for item in fetches[: max(available_requests, 0)]}
    items = [
        item
        for item in plan.items
        if item.action not in ("upsert", "rename") or id(item) in kept_fetches
    ]
    dropped = len(plan.items) - len(items)
    return Plan(items, plan.pending + dropped, plan.unchanged)


def find_path_twins(paths: Iterable[str]) -> list[list[str]]:
    """Group paths that differ only in Unicode normalization or letter case.

    Git keeps them apart and so does the content table, but a case-insensitive file system or
    a URL router may not, so they deserve a warning. Each group is sorted; groups are sorted.
    """
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(unicodedata.normalize("NFC", path).casefold(), []).append(path)
    return sorted(sorted(group) for group in groups.values() if len(group) > 1)
