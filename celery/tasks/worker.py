"""Celery worker entry point: `python celery/tasks/worker.py [celery worker options]`.

The tasks live in the package (iot_pipeline.worker); this file only starts a worker on the
processing queue.
"""

import sys

from iot_pipeline.worker.app import PROCESSING_QUEUE, app

if __name__ == "__main__":
    app.worker_main(["worker", "--loglevel=INFO", "-Q", PROCESSING_QUEUE, *sys.argv[1:]])
