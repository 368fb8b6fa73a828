"""The native stack: Kafka, OpenSearch and Redis run as local processes under supervisord.

`make up`, `make down` and `make status` call `python -m iot_pipeline.stack`. The services
bind where the settings point the clients (`KAFKA_BROKERS`, `SEARCH_URL`, `REDIS_URL`), on
loopback only; data, logs, jars and run files live under `STACK_DIR` (default `.stack/`).
"""

from iot_pipeline.contracts.probes import Health
from iot_pipeline.stack.model import Service, StackPaths
from iot_pipeline.stack.services import native_services

__all__ = ["Health", "Service", "StackPaths", "native_services"]
