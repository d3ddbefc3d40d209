"""The batch report: counts, duration, requests used and failed files, from outcome rows.

Everything is read from ``sync_outcomes`` and ``sync_batches``; a file retried within a batch
counts once, by its latest outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from wryte_pipeline.store import Batch, ContentStore, as_utc

MAX_LISTED_FILES = 50
LATER_TICKS_NOTE = (
    "more changed files wait for a later tick (the per-tick cap or the rate-limit budget)"
)


@dataclass(frozen=True)
class BatchReport:
    """Summary of one batch, ready to print or to attach as asset metadata."""

    batch: Batch
    total: int
    succeeded: int
    failed: int
    retried: int
    skipped: int
    deleted: int
    duration_seconds: float | None
    requests_used: int | None
    failures: list[tuple[str, str]] = field(default_factory=list)
    deferred: int = 0
    skips: list[tuple[str, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Count the files that have an outcome."""
        return self.succeeded + self.failed + self.skipped + self.deleted + self.deferred

    @property
    def counts(self) -> dict[str, int]:
        """Return the counts by name, in report order."""
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "deferred": self.deferred,
        }


def build_report(store: ContentStore, batch: Batch) -> BatchReport:
    """Read a batch's outcome rows and summarise them."""
    frame = pd.DataFrame(store.outcomes(batch.id))
    if frame.empty:
        return BatchReport(batch, batch.total, 0, 0, 0, 0, 0, None, batch.requests_used)
    latest = frame.drop_duplicates("path", keep="last")
    by_status = latest["status"].value_counts()
    retried = int((latest["attempts"] > 1).sum() + (frame["path"].duplicated().sum()))
    end = as_utc(batch.finished_at) or as_utc(frame["created_at"].max().to_pydatetime())
    duration = (end - batch.created_at).total_seconds() if end else None
    failed = latest[latest["status"] == "failed"]
    skipped = latest[latest["status"] == "skipped"]
    return BatchReport(
        batch=batch,
        total=batch.total,
        succeeded=int(by_status.get("succeeded", 0)),
        failed=int(by_status.get("failed", 0)),
        retried=retried,
        skipped=int(by_status.get("skipped", 0)),
        deleted=int(by_status.get("deleted", 0)),
        duration_seconds=duration,
        requests_used=batch.requests_used,
        failures=list(zip(failed["path"], failed["error"].fillna(""), strict=True)),
        skips=list(zip(skipped["path"], skipped["error"].fillna(""), strict=True)),
        deferred=int(by_status.get("deferred", 0)),
    )


def render_progress(report: BatchReport) -> str:
    """Return a one-line progress summary such as ``412 of 993 files, 3 failed``."""
    line = f"{report.done} of {report.total} files"
    if report.failed:
        line += f", {report.failed} failed"
    return line


def render_text(report: BatchReport) -> str:
    """Render the report for a terminal."""
    batch = report.batch
    lines = [
        f"batch {batch.id} of {batch.repo} at {batch.head_commit[:7]}"
        + (f" (from {batch.base_commit[:7]})" if batch.base_commit else ""),
        "  " + ", ".join(f"{name} {value}" for name, value in report.counts.items()),
        f"  duration {_seconds(report.duration_seconds)}, GitHub requests "
        f"{report.requests_used if report.requests_used is not None else 'unknown'}",
    ]
    if not batch.complete:
        lines.append(f"  {LATER_TICKS_NOTE}")
    if report.failures:
        lines.append("  failed files:")
        lines.extend(f"    {error or path}" for path, error in report.failures[:MAX_LISTED_FILES])
        lines.extend(_more_line(len(report.failures), "    "))
    if report.skips:
        lines.append("  skipped files:")
        lines.extend(f"    {reason or path}" for path, reason in report.skips[:MAX_LISTED_FILES])
        lines.extend(_more_line(len(report.skips), "    "))
    return "\n".join(lines)


def render_markdown(report: BatchReport) -> str:
    """Render the report as Markdown tables for the Dagster UI."""
    names = " | ".join(report.counts)
    lines = [f"| {names} | duration | requests |", "|---" * (len(report.counts) + 2) + "|"]
    counts = " | ".join(str(value) for value in report.counts.values())
    requests = report.requests_used if report.requests_used is not None else ""
    lines.append(f"| {counts} | {_seconds(report.duration_seconds)} | {requests} |")
    if not report.batch.complete:
        lines += ["", LATER_TICKS_NOTE.capitalize() + "."]
    if report.failures:
        lines += ["", "**Failed files**", "", "| path | error |", "|---|---|"]
        lines += [
            f"| `{path}` | {_cell(error)} |" for path, error in report.failures[:MAX_LISTED_FILES]
        ]
        lines.extend(_more_line(len(report.failures), ""))
    if report.skips:
        lines += ["", "**Skipped files**", "", "| path | reason |", "|---|---|"]
        lines += [
            f"| `{path}` | {_cell(reason)} |" for path, reason in report.skips[:MAX_LISTED_FILES]
        ]
        lines.extend(_more_line(len(report.skips), ""))
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "unknown"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _more_line(count: int, indent: str) -> list[str]:
    if count <= MAX_LISTED_FILES:
        return []
    return [f"{indent}... and {count - MAX_LISTED_FILES} more"]
