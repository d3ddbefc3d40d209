"""The cost of a Dagster run and of a file, measured by this benchmark, behind the run shape.

For each instance storage, the syncs that made exactly one run give points (files in the run,
run seconds from the instance's run records): push-1, push-20 and hugo-docs cold. A
least-squares line through them splits a run's time into a fixed cost per run and a cost per
file. The fixed cost includes the run's GitHub round trips (branch, tree, blobs or tarball) at
the fake server's latency. The idle tick's wall time is the cost of starting the sync process,
loading the code and evaluating the sensor once.

The last two columns estimate one run per file from those costs: in one process, and with a
new process for every run, as the daemon's default run launcher starts. The idle tick's wall
time is used as the cost of that process start.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.results import CONTENDER_LABELS, Result, find
from benchmarks.targets import PIPELINES

SINGLE_RUN_WORKLOADS = ("push-1", "push-20", "hugo-cold")


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Return the least-squares intercept and slope through at least two distinct x values."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return mean_y - slope * mean_x, slope


def render_run_shape(results: Sequence[Result]) -> str:
    """Render the per-run and per-file costs of each instance storage as a Markdown table."""
    lines = [
        "| instance storage | process start and tick s | fixed cost per run s "
        "| cost per file ms | events per file | one run for all files s "
        "| one run per file s (estimated) | one process and run per file s (estimated) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    rows = [_run_shape_row(results, pipeline) for pipeline in PIPELINES]
    lines += ["| " + " | ".join(row) + " |" for row in rows if row is not None]
    if len(lines) == 2:
        return "Not measured: it needs two of the push-1, push-20 and hugo-cold workloads."
    return "\n".join(lines)


def _run_shape_row(results: Sequence[Result], pipeline: str) -> list[str] | None:
    single_runs = [
        result
        for workload in SINGLE_RUN_WORKLOADS
        if (result := find(results, workload, pipeline)) is not None
        and result.runs == 1
        and result.run_seconds
    ]
    if len({result.files for result in single_runs}) < 2:
        return None
    fixed, per_file = fit_line([(result.files, result.run_seconds[0]) for result in single_runs])
    largest = max(single_runs, key=lambda result: result.files)
    idle = find(results, "idle", pipeline)
    events_per_file = (largest.events or 0) / largest.files
    one_run_per_file = largest.files * (fixed + per_file)
    process_per_run = (
        f"{one_run_per_file + largest.files * idle.wall_seconds:.0f}" if idle else "-"
    )
    return [
        CONTENDER_LABELS[pipeline].removeprefix("pipeline, "),
        f"{idle.wall_seconds:.1f}" if idle else "-",
        f"{fixed:.2f}",
        f"{per_file * 1000:.1f}",
        f"{events_per_file:.2f}",
        f"{largest.run_seconds[0]:.1f} ({largest.files} files)",
        f"{one_run_per_file:.0f}",
        process_per_run,
    ]
