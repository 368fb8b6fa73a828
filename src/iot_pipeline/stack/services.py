"""What the native stack runs, in start order: the backing services (Redis, Kafka, OpenSearch),
then the pipeline's own processes and Airflow. Each kind is defined in a module of its own:
`redis_service`, `jvm_services`, `python_services`, `airflow_services`; `model` holds what a
service is."""

from __future__ import annotations

from pathlib import Path

from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.airflow_services import native_airflow_services
from iot_pipeline.stack.jvm_services import java_executable, kafka_service, opensearch_service
from iot_pipeline.stack.model import Service, StackPaths
from iot_pipeline.stack.python_services import api_service, generator_service, worker_service
from iot_pipeline.stack.redis_service import redis_service


def native_services(settings: StackSettings) -> list[Service]:
    """The services of the native stack, in start order."""
    paths = StackPaths.from_settings(settings)
    java = java_executable(settings)
    services = [
        redis_service(settings, paths),
        kafka_service(settings, paths, java),
        opensearch_service(settings, paths, java),
    ]
    services.append(worker_service(settings, Path.cwd()))
    if settings.data_generator_enabled:
        services.append(generator_service(settings, paths, Path.cwd()))
    if settings.api_enabled:
        services.append(api_service(settings))
    if settings.airflow_enabled:
        services += native_airflow_services(settings, paths, Path.cwd())
    return services
