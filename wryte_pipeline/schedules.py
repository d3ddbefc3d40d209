"""Schedules: publish on time, and check the table against the repository once a day."""

from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from wryte_pipeline.assets import (
    DEFAULT_ASSETS,
    PUBLISHED_REFRESH_KEY,
    AssetJob,
    RepositoryAssets,
)
from wryte_pipeline.checks import DEFAULT_CHECKS, RepositoryChecks
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.store import ContentStore


@dataclass(frozen=True)
class RepositorySchedules:
    """The scheduled jobs of one repository."""

    publish_job: AssetJob
    content_check_job: AssetJob
    publish_schedule: dg.ScheduleDefinition
    content_check_schedule: dg.ScheduleDefinition


def build_schedules(assets: RepositoryAssets, checks: RepositoryChecks) -> RepositorySchedules:
    """Define the publish and daily check schedules of one repository."""
    config = assets.config
    publish_job = dg.define_asset_job(
        config.qualified("publish_job"),
        selection=dg.AssetSelection.assets(assets.published_documents),
        description="Rebuild published_documents for the current time.",
    )
    content_check_job = dg.define_asset_job(
        config.qualified("content_check_job"),
        selection=dg.AssetSelection.checks(checks.content_matches_repository),
        description="Compare the documents table with the repository's branch head.",
    )

    @dg.schedule(
        name=config.qualified("publish_schedule"),
        job=publish_job,
        cron_schedule="* * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def publish_schedule(
        context: dg.ScheduleEvaluationContext, wryte: WryteResource
    ) -> dg.RunRequest | dg.SkipReason:
        """Request a rebuild in each minute in which a publish or expiry time fell due."""
        return evaluate_publish_tick(context, wryte.for_repository(config))

    content_check_schedule = dg.ScheduleDefinition(
        name=config.qualified("content_check_schedule"),
        job=content_check_job,
        cron_schedule="17 3 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Once a day, check that the documents table equals the repository.",
    )
    return RepositorySchedules(
        publish_job, content_check_job, publish_schedule, content_check_schedule
    )


def evaluate_publish_tick(
    context: dg.ScheduleEvaluationContext, wryte: WryteResource
) -> dg.RunRequest | dg.SkipReason:
    """Skip unless a publish or expiry time fell due since the last rebuild."""
    store = wryte.open_store()
    now = context.scheduled_execution_time
    if not publish_is_due(store, now):
        last = store.load_cursor(PUBLISHED_REFRESH_KEY)
        return dg.SkipReason(f"no publish or expiry time fell due since {last}")
    return dg.RunRequest(run_key=f"publish-{now.isoformat()}")


def publish_is_due(store: ContentStore, now: datetime) -> bool:
    """Tell whether `published_documents` was never built or a time in it fell due since."""
    saved = store.load_cursor(PUBLISHED_REFRESH_KEY)
    if saved is None:
        return True
    return store.publish_events_between(datetime.fromisoformat(saved), now) > 0


DEFAULT_SCHEDULES = build_schedules(DEFAULT_ASSETS, DEFAULT_CHECKS)
publish_schedule = DEFAULT_SCHEDULES.publish_schedule
