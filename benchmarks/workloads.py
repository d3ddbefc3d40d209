"""The workloads: each runs its contenders against the fake server and records one Result each.

Every contender runs in its own subprocess, so its wall time includes interpreter start and
imports, and its peak RSS is that of its own process tree. The fake server's counters are reset
and its primary rate-limit budget refilled before each contender.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fake_server import (
    PROJECT_ROOT,
    FakeGitHubProcess,
    loopback_environment,
    requests_by_endpoint,
)
from benchmarks.naive import LISTING_REQUESTS
from benchmarks.pipeline_runs import (
    STOCK_SUFFIX,
    PipelineTarget,
    PostgresDatabases,
    RunFacts,
    create_target,
    dagster_runs,
    document_count,
    landed_count,
    run_sync,
)
from benchmarks.proctree import BenchmarkError, Measurement, run_measured
from benchmarks.repos import commit_edits
from benchmarks.results import Result, median_result

HUGO_REPO = "bench/hugo-docs"
SYNTHETIC_REPO = "bench/synthetic"
WORKLOADS = ("hugo-cold", "push-1", "push-20", "idle", "synthetic-cold")
HUGO_STATE_WORKLOADS = ("push-1", "push-20", "idle")
NAIVE_TIMEOUT_SECONDS = 900
FLOOR_TIMEOUT_SECONDS = 300
SYNC_TIMEOUT_SECONDS = 900
STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class ServedRepository:
    """A repository the fake server serves: its work tree, head commit and Markdown count."""

    full_name: str
    work_tree: Path
    head: str
    markdown_files: int


@dataclass(frozen=True)
class Options:
    """Command-line choices: workloads, instance storages, sampling, repeats and code.

    Attributes:
        storages: instance storages to run the pipeline with (``sqlite``, ``postgres``).
        stock: also import hugo-docs with Dagster's own storage class for each storage.
        sample: files for the sequential baseline to sync before extrapolating; None for all.
        repeat: imports of hugo-docs by the pipeline and the floor; the median is recorded.
        log_dir: folder that receives each contender's output, or None to discard it.
        code_root: folder the pipeline, the fake server and the contenders are imported from.
    """

    workloads: Sequence[str]
    storages: Sequence[str]
    sample: int | None
    stock: bool = True
    repeat: int = 1
    log_dir: Path | None = None
    code_root: Path = PROJECT_ROOT


class Benchmark:
    """Runs the chosen workloads in order and collects their results."""

    def __init__(
        self,
        options: Options,
        workdir: Path,
        server: FakeGitHubProcess,
        repositories: Mapping[str, ServedRepository],
        databases: PostgresDatabases | None,
    ) -> None:
        """Bind the benchmark to its server, repositories and working folder."""
        self.options = options
        self.workdir = workdir
        self.server = server
        self.repositories = repositories
        self.databases = databases
        self.results: list[Result] = []
        self._hugo_targets: dict[str, PipelineTarget] = {}
        self._start = time.monotonic()
        self._database_numbers = itertools.count(1)
        self._log_count = 0

    def run(self) -> list[Result]:
        """Run each chosen workload. Push and idle workloads need the hugo-docs import first."""
        workloads = self.options.workloads
        if "hugo-cold" in workloads:
            self.hugo_cold()
        elif any(workload in workloads for workload in HUGO_STATE_WORKLOADS):
            self._import_hugo_unrecorded()
        if "push-1" in workloads:
            self.push("push-1", count=1, offset=0)
        if "push-20" in workloads:
            self.push("push-20", count=20, offset=7)
        if "idle" in workloads:
            self.idle()
        if "synthetic-cold" in workloads:
            self.synthetic_cold()
        return self.results

    def hugo_cold(self) -> None:
        """Import hugo-docs into empty stores: pipeline, floor, flood and sequential loop.

        The pipeline (also with Dagster's own storage classes, unless ``stock`` is off) and the
        floor import ``repeat`` times, each into new stores, and the median by wall time is
        recorded. Later workloads reuse the last import's stores of the pooled storages.
        """
        hugo = self.repositories[HUGO_REPO]
        repeated: dict[str, list[Result]] = {}
        for repetition in range(1, self.options.repeat + 1):
            self._hugo_targets = self._new_targets(f"hugo-{repetition}")
            targets = dict(self._hugo_targets)
            if self.options.stock:
                targets |= self._new_targets(f"hugo-{repetition}", suffix=STOCK_SUFFIX)
            for contender, target in targets.items():
                result = self._pipeline(
                    "hugo-cold", contender, target, hugo.full_name, hugo.markdown_files
                )
                repeated.setdefault(contender, []).append(result)
            repeated.setdefault("floor", []).append(self._floor("hugo-cold", hugo))
        self.results += [median_result(results) for results in repeated.values()]
        self.results.append(self._naive("flood", hugo))
        self.results.append(self._naive("sequential", hugo))

    def push(self, workload: str, count: int, offset: int) -> None:
        """Commit edits to ``count`` files, move the served branch, and sync each target."""
        hugo = self.repositories[HUGO_REPO]
        pushed = commit_edits(hugo.work_tree, count, offset, label=workload)
        self.server.set_head(hugo.full_name, pushed.sha)
        for contender, target in self._hugo_targets.items():
            result = self._pipeline(
                workload, contender, target, hugo.full_name, count, expected=pushed.blob_shas
            )
            self.results.append(result)

    def idle(self) -> None:
        """Sync again with nothing changed: the tick should cost a 304 and no run."""
        for contender, target in self._hugo_targets.items():
            self.results.append(
                self._pipeline("idle", contender, target, HUGO_REPO, 0, expected={})
            )

    def synthetic_cold(self) -> None:
        """Import the synthetic repository into empty stores: pipeline and floor."""
        synthetic = self.repositories[SYNTHETIC_REPO]
        for contender, target in self._new_targets("synthetic").items():
            result = self._pipeline(
                "synthetic-cold", contender, target, synthetic.full_name, synthetic.markdown_files
            )
            self.results.append(result)
        self.results.append(self._floor("synthetic-cold", synthetic))

    def _import_hugo_unrecorded(self) -> None:
        self._hugo_targets = self._new_targets("hugo")
        for target in self._hugo_targets.values():
            self._log(f"setup: importing hugo-docs into the {target.storage} target")
            measurement = run_sync(
                target,
                HUGO_REPO,
                self.server.url,
                code_root=self.options.code_root,
                timeout_seconds=SYNC_TIMEOUT_SECONDS,
            )
            if measurement.returncode != 0:
                raise BenchmarkError(
                    f"setup import into the {target.storage} target exited with status "
                    f"{measurement.returncode}:\n{measurement.stderr[-STDERR_TAIL_CHARS:]}"
                )

    def _new_targets(self, label: str, suffix: str = "") -> dict[str, PipelineTarget]:
        return {
            f"pipeline-{storage}{suffix}": create_target(
                storage + suffix, self.workdir / f"{label}-{storage}{suffix}", self.databases
            )
            for storage in self.options.storages
        }

    def _pipeline(
        self,
        workload: str,
        contender: str,
        target: PipelineTarget,
        full_name: str,
        files: int,
        expected: Mapping[str, str] | None = None,
    ) -> Result:
        database = target.content_database
        expected_blobs = dict(expected or {})

        def all_landed() -> bool:
            return landed_count(database, expected_blobs) == len(expected_blobs)

        runs_before = dagster_runs(target)
        self.server.start_round()
        measurement = run_sync(
            target,
            full_name,
            self.server.url,
            code_root=self.options.code_root,
            timeout_seconds=SYNC_TIMEOUT_SECONDS,
            probe=all_landed if expected_blobs else None,
        )
        stats = self.server.stats(include_log=True)
        new_runs = [
            run for run_id, run in dagster_runs(target).items() if run_id not in runs_before
        ]
        stored = document_count(database) if expected is None else landed_count(database, expected)
        result = _pipeline_result(workload, contender, measurement, stats, files, stored, new_runs)
        self._log_result(result, measurement)
        return result

    def _floor(self, workload: str, repository: ServedRepository) -> Result:
        database = self.workdir / f"floor-{workload}-{next(self._database_numbers)}.db"
        database_url = f"sqlite:///{database}"
        command = [sys.executable, "-m", "benchmarks.floor", "--database-url", database_url]
        command += self._source_arguments(repository)
        measurement, stats, summary = self._contender(command, FLOOR_TIMEOUT_SECONDS)
        note = f"{summary['parse_failed']} failed to parse" if summary["parse_failed"] else ""
        result = _result(workload, "floor", measurement, stats, summary["files"], note)
        result.stored = summary["stored"]
        self._log_result(result, measurement)
        return result

    def _naive(self, mode: str, repository: ServedRepository) -> Result:
        database = self.workdir / f"naive-{mode}.db"
        command = [sys.executable, "-m", "benchmarks.naive", mode, "--database", str(database)]
        command += self._source_arguments(repository)
        if mode == "sequential" and self.options.sample is not None:
            command += ["--sample", str(self.options.sample)]
        measurement, stats, summary = self._contender(command, NAIVE_TIMEOUT_SECONDS)
        result = _result("hugo-cold", mode, measurement, stats, summary["files"], "")
        result.stored = summary["stored"]
        result.note = _naive_note(summary, stats)
        if summary["attempted"] < summary["files"]:
            _extrapolate(result, summary)
        self._log_result(result, measurement)
        return result

    def _source_arguments(self, repository: ServedRepository) -> list[str]:
        return [
            "--api-url",
            self.server.url,
            "--repo",
            repository.full_name,
            "--ref",
            repository.head,
        ]

    def _contender(
        self, command: list[str], timeout_seconds: float
    ) -> tuple[Measurement, dict[str, Any], dict[str, Any]]:
        self.server.start_round()
        measurement = run_measured(
            command,
            env=loopback_environment(self.options.code_root),
            cwd=self.options.code_root,
            timeout_seconds=timeout_seconds,
        )
        stats = self.server.stats()
        if measurement.returncode != 0:
            raise BenchmarkError(
                f"{' '.join(command[1:4])} exited with status {measurement.returncode}:\n"
                f"{measurement.stderr[-STDERR_TAIL_CHARS:]}"
            )
        summary: dict[str, Any] = json.loads(measurement.stdout.strip().splitlines()[-1])
        return measurement, stats, summary

    def _log_result(self, result: Result, measurement: Measurement) -> None:
        self._log(
            f"{result.workload}, {result.contender}: {result.wall_seconds:.1f} s, "
            f"{result.requests:.0f} requests, {result.rate_limited:.0f} rate-limited, "
            f"{result.stored}/{result.files} stored"
        )
        if measurement.returncode != 0:
            self._log(f"exit status {measurement.returncode}; stderr ends with:")
            self._log(measurement.stderr[-STDERR_TAIL_CHARS:])
        if self.options.log_dir is not None:
            self._log_count += 1
            name = f"{self._log_count:02d}-{result.workload}-{result.contender}.log"
            text = f"{measurement.stdout}\n--- stderr ---\n{measurement.stderr}"
            (self.options.log_dir / name).write_text(text)

    def _log(self, message: str) -> None:
        elapsed = time.monotonic() - self._start
        print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


def _result(
    workload: str,
    contender: str,
    measurement: Measurement,
    stats: Mapping[str, Any],
    files: int,
    note: str,
) -> Result:
    return Result(
        workload=workload,
        contender=contender,
        wall_seconds=measurement.wall_seconds,
        requests=stats["requests"],
        counted=stats["counted"],
        rate_limited=stats["rate_limited"],
        peak_rss_bytes=measurement.peak_rss_bytes,
        files=files,
        stored=0,
        note=note,
    )


def _pipeline_result(
    workload: str,
    contender: str,
    measurement: Measurement,
    stats: Mapping[str, Any],
    files: int,
    stored: int,
    runs: Sequence[RunFacts],
) -> Result:
    endpoints = requests_by_endpoint(stats.get("log", []))
    note_parts = [", ".join(f"{name} {count}" for name, count in endpoints.items())]
    if stats["not_modified"]:
        note_parts.append(f"{stats['not_modified']} not modified (304)")
    if measurement.returncode != 0:
        note_parts.append(f"sync exit status {measurement.returncode}")
    result = _result(workload, contender, measurement, stats, files, ", ".join(note_parts))
    result.stored = stored
    result.runs = len(runs)
    result.landed_seconds = measurement.probe_seconds
    result.run_seconds = [run.seconds for run in runs]
    result.events = sum(run.events for run in runs)
    return result


def _naive_note(summary: Mapping[str, Any], stats: Mapping[str, Any]) -> str:
    parts = [f"max {stats['max_in_flight']} in flight"]
    if summary["fetch_failed"]:
        parts.append(f"{summary['fetch_failed']} fetches failed after retries")
    if summary["parse_failed"]:
        parts.append(f"{summary['parse_failed']} failed to parse")
    return ", ".join(parts)


def _extrapolate(result: Result, summary: Mapping[str, Any]) -> None:
    """Scale a sampled run's file loop up to every file. The listing is counted once."""
    scale = summary["files"] / summary["attempted"]
    result.wall_seconds += summary["files_seconds"] * (scale - 1)
    result.requests = LISTING_REQUESTS + (result.requests - LISTING_REQUESTS) * scale
    result.counted = LISTING_REQUESTS + (result.counted - LISTING_REQUESTS) * scale
    result.rate_limited *= scale
    sampled = f"sample of {summary['attempted']} files ({result.stored} stored), scaled up"
    result.stored = round(result.stored * scale)
    result.estimated = True
    result.note = f"{sampled}; {result.note}"
