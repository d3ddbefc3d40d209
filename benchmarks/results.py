"""Benchmark results: one row per contender and workload, rendered as Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MIB = 1024 * 1024

WORKLOAD_LABELS = {
    "hugo-cold": "hugo-docs cold",
    "push-1": "push, 1 file changed",
    "push-20": "push, 20 files changed",
    "idle": "idle tick",
    "synthetic-cold": "synthetic cold",
}
CONTENDER_LABELS = {
    "sequential": "naive sequential",
    "flood": "naive flood",
    "pipeline-sqlite": "pipeline, SQLite instance",
    "pipeline-postgres": "pipeline, Postgres instance",
    "pipeline-sqlite-stock": "pipeline, SQLite instance, Dagster's storage class",
    "pipeline-postgres-stock": "pipeline, Postgres instance, dagster-postgres storage class",
    "floor": "floor",
}
REFERENCE_CONTENDER = "pipeline-sqlite"


@dataclass
class Result:
    """One contender on one workload.

    Attributes:
        requests: API requests the fake server received, 304s and rejections included.
        counted: requests that cost primary rate-limit budget.
        rate_limited: requests rejected by the secondary or primary rate limit.
        peak_rss_bytes: peak RSS summed over the contender's process tree.
        files: files the workload adds or changes.
        stored: files stored with their new content when the contender finished.
        runs: Dagster runs the sync created; None for contenders without Dagster.
        landed_seconds: seconds from the sync's start until every changed file was stored.
        run_seconds: duration of each Dagster run, from the instance's run records.
        events: event log entries written by those runs.
        estimated: the row is extrapolated from a sample.
    """

    workload: str
    contender: str
    wall_seconds: float
    requests: float
    counted: float
    rate_limited: float
    peak_rss_bytes: int
    files: int
    stored: int
    runs: int | None = None
    landed_seconds: float | None = None
    run_seconds: list[float] = field(default_factory=list)
    events: int | None = None
    estimated: bool = False
    note: str = ""

    @property
    def seconds_per_file(self) -> float:
        """Wall time divided by the files of the workload."""
        return self.wall_seconds / self.files if self.files else 0.0


def find(results: Sequence[Result], workload: str, contender: str) -> Result | None:
    """Return the result of one contender on one workload, if it ran."""
    for result in results:
        if result.workload == workload and result.contender == contender:
            return result
    return None


def median_result(results: Sequence[Result]) -> Result:
    """Return the result with the median wall time. With several, its note lists every time."""
    ordered = sorted(results, key=lambda result: result.wall_seconds)
    chosen = ordered[(len(ordered) - 1) // 2]
    if len(results) > 1:
        walls = ", ".join(f"{result.wall_seconds:.1f}" for result in results)
        chosen.note = f"median of {len(results)} ({walls} s); {chosen.note}".rstrip("; ")
    return chosen


def render_results(results: Sequence[Result]) -> str:
    """Render every result as one Markdown table, with wall time relative to the pipeline."""
    lines = [
        "| workload | contender | wall s | vs pipeline | API requests | counted | rate-limited "
        "| peak RSS MiB | stored | Dagster runs | landed s | notes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for result in results:
        reference = find(results, result.workload, REFERENCE_CONTENDER)
        ratio = (
            f"{result.wall_seconds / reference.wall_seconds:.2f}x"
            if reference and reference.wall_seconds
            else "-"
        )
        mark = " (estimated)" if result.estimated else ""
        cells = [
            f"{WORKLOAD_LABELS[result.workload]} ({result.files} files)",
            CONTENDER_LABELS[result.contender] + mark,
            f"{result.wall_seconds:.1f}",
            ratio,
            f"{result.requests:.0f}",
            f"{result.counted:.0f}",
            f"{result.rate_limited:.0f}",
            f"{result.peak_rss_bytes / MIB:.0f}",
            f"{result.stored}/{result.files}",
            "-" if result.runs is None else str(result.runs),
            "-" if result.landed_seconds is None else f"{result.landed_seconds:.1f}",
            result.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
