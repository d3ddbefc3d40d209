"""Schedules: publish on time, and check the table against the repository once a day."""

from datetime import datetime

import dagster as dg

from wryte_pipeline.assets import PUBLISHED_REFRESH_KEY, published_documents
from wryte_pipeline.checks import content_matches_repository
from wryte_pipeline.resources import WryteResource

publish_job = dg.define_asset_job(
    "publish_job",
    selection=dg.AssetSelection.assets(published_documents),
    description="Rebuild published_documents for the current time.",
)

content_check_job = dg.define_asset_job(
    "content_check_job",
    selection=dg.AssetSelection.checks(content_matches_repository),
    description="Compare the documents table with the repository's branch head.",
)


@dg.schedule(
    job=publish_job,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def publish_schedule(
    context: dg.ScheduleEvaluationContext, wryte: WryteResource
) -> dg.RunRequest | dg.SkipReason:
    """Request a rebuild in each minute in which a publish or expiry time fell due."""
    store = wryte.open_store()
    now = context.scheduled_execution_time
    saved = store.load_cursor(PUBLISHED_REFRESH_KEY)
    if saved is not None:
        last = datetime.fromisoformat(saved)
        due = store.publish_events_between(last, now)
        if not due:
            return dg.SkipReason(f"no publish or expiry time fell due since {last.isoformat()}")
    return dg.RunRequest(run_key=f"publish-{now.isoformat()}")


content_check_schedule = dg.ScheduleDefinition(
    job=content_check_job,
    cron_schedule="17 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Once a day, check that the documents table equals the repository.",
)
