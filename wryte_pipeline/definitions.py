"""The code location: assets, jobs, the repository sensor and the resource.

Loading this module reads no setting and touches neither the network nor a database.
"""

import dagster as dg

from wryte_pipeline.assets import (
    batch_report,
    content_table,
    markdown_document,
    published_documents,
)
from wryte_pipeline.checks import (
    content_matches_repository,
    last_batch_parsed,
    published_slugs_unique,
)
from wryte_pipeline.partitions import markdown_files
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.schedules import (
    content_check_job,
    content_check_schedule,
    publish_job,
    publish_schedule,
)
from wryte_pipeline.sensors import repository_sensor, sync_job

markdown_document_job = dg.define_asset_job(
    "markdown_document_job",
    selection=[markdown_document],
    partitions_def=markdown_files,
    description="Fetch, parse and store chosen files; for backfills over file partitions.",
)

defs = dg.Definitions(
    assets=[markdown_document, content_table, batch_report, published_documents],
    asset_checks=[content_matches_repository, last_batch_parsed, published_slugs_unique],
    jobs=[sync_job, markdown_document_job, publish_job, content_check_job],
    sensors=[repository_sensor],
    schedules=[publish_schedule, content_check_schedule],
    resources={"wryte": WryteResource()},
    executor=dg.in_process_executor,
)
