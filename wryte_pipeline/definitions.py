"""The code location: assets, jobs, sensors, schedules, checks and the resource.

One repository comes from the ``WRYTE_*`` variables, or several from the file named by
``WRYTE_CONFIG``. Loading this module reads that file, but no other setting, and touches
neither the network nor a database.
"""

import dagster as dg

from wryte_pipeline.assets import DEFAULT_ASSETS, build_assets
from wryte_pipeline.checks import DEFAULT_CHECKS, build_checks
from wryte_pipeline.repositories import RepositoryConfig, load_repository_configs
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.schedules import DEFAULT_SCHEDULES, build_schedules
from wryte_pipeline.sensors import (
    build_document_job,
    build_sensor,
    build_sync_job,
    document_job,
    repository_sensor,
    sync_job,
)


def build_definitions(configs: list[RepositoryConfig]) -> dg.Definitions:
    """Assemble the definitions of every repository; they share the resource and run queue."""
    parts = [_repository_definitions(config) for config in configs]
    return dg.Definitions.merge(
        *parts,
        dg.Definitions(resources={"wryte": WryteResource()}, executor=dg.in_process_executor),
    )


def _repository_definitions(config: RepositoryConfig) -> dg.Definitions:
    if config.name is None:
        assets, checks, schedules = DEFAULT_ASSETS, DEFAULT_CHECKS, DEFAULT_SCHEDULES
        job, files_job, sensor = sync_job, document_job, repository_sensor
    else:
        assets = build_assets(config)
        checks = build_checks(assets)
        schedules = build_schedules(assets, checks)
        job = build_sync_job(assets, checks)
        files_job = build_document_job(assets)
        sensor = build_sensor(assets, job, files_job)
    return dg.Definitions(
        assets=assets.all,
        asset_checks=checks.all,
        jobs=[
            job,
            files_job,
            schedules.publish_job,
            schedules.content_check_job,
        ],
        sensors=[sensor],
        schedules=[schedules.publish_schedule, schedules.content_check_schedule],
    )


defs = build_definitions(load_repository_configs())
