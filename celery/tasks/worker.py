"""Celery worker entry point: `python celery/tasks/worker.py [celery worker options]`.

The tasks live in the package (iot_pipeline.worker); this file only starts a worker on the
processing and replay queues. With LOG_FORMAT=json (the default) Celery's text banner is left
out: the worker announces itself in one JSON line like every other line it logs.
"""

import sys

from iot_pipeline.contracts.tasks import WORKER_QUEUES
from iot_pipeline.settings import get_settings
from iot_pipeline.worker.app import app

if __name__ == "__main__":
    quiet = ["--quiet"] if get_settings().log_format == "json" else []
    app.worker_main([*quiet, "worker", "--loglevel=INFO", "-Q", WORKER_QUEUES, *sys.argv[1:]])
