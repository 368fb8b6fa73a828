"""The Celery tasks as the senders see them: names, queues, the app's configuration (Redis
broker and result backend) and the small client that sends a task. Building an app here
starts nothing: the worker's own app and signals are `worker.app`."""

from __future__ import annotations

from celery import Celery

from iot_pipeline.settings import Settings

PROCESSING_QUEUE = "processing"
REPLAY_QUEUE = "replay"  # replays wait apart: a long replay never holds the ETL's ranges back
WORKER_QUEUES = f"{PROCESSING_QUEUE},{REPLAY_QUEUE}"
PROCESS_RANGE = "iot.process_range"
SETTLE_OVERRIDE = "iot.settle_override"  # apply or revert an operator's override
# a run's work across partitions: district windows, buddy check (processing.across_partitions)
SETTLE_RUN = "iot.settle_run"


def create_app(settings: Settings) -> Celery:
    """A Celery app configured from the settings."""
    app = Celery(
        "iot_pipeline",
        broker=settings.redis_url,
        backend=settings.redis_url,
        include=["iot_pipeline.worker.tasks"],
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=PROCESSING_QUEUE,
        task_routes={
            PROCESS_RANGE: {"queue": PROCESSING_QUEUE},
            SETTLE_OVERRIDE: {"queue": PROCESSING_QUEUE},
            SETTLE_RUN: {"queue": PROCESSING_QUEUE},
        },
        # The work is idempotent (deterministic ids, checkpointed state): acknowledge after
        # it is done, one task at a time, and requeue when the worker dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_time_limit=settings.worker_task_time_limit_seconds,
        task_soft_time_limit=max(1, settings.worker_task_time_limit_seconds - 30),
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # A message whose worker died unseen is handed out again after this; a started task
        # ends by its time limit first, so it is never run twice at once. (A worker that
        # starts takes back a dead one's tasks at once: worker/recovery.py.)
        broker_transport_options={
            "visibility_timeout": settings.worker_task_time_limit_seconds + 300
        },
        worker_hijack_root_logger=False,
    )
    return app


# Sending waits out a broker hiccup this long at most; after that the override stays pending
# and the sweep (orchestration.override_sweep) sends it again.
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def send_settle(client: Celery, override_id: str) -> None:
    """Ask a worker to settle an override (apply it on, or revert it from, the stored
    readings); raises when the broker cannot take the message."""
    client.send_task(
        SETTLE_OVERRIDE,
        args=[override_id],
        queue=PROCESSING_QUEUE,
        retry=True,
        retry_policy=SEND_RETRY_POLICY,
        ignore_result=True,  # the outcome is on the override's document
    )
