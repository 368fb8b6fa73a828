"""Celery tasks: deserialize the batch key, call the pipeline, return its report."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import Token
from datetime import UTC, datetime
from functools import cache
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry
from celery.signals import task_postrun, task_prerun, worker_process_init
from pydantic import ValidationError

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.tasks import PROCESS_RANGE, SETTLE_OVERRIDE, SETTLE_RUN, send_settle
from iot_pipeline.errors import (
    PartitionBusy,
    RangeFailed,
    RangeRedelivered,
    RedisUnavailable,
    StoreError,
    StoreRefused,
    TransientError,
    TransientStoreError,
)
from iot_pipeline.logs import bind, unbind
from iot_pipeline.processing import across_partitions, overrides, registry
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings, get_settings
from iot_pipeline.storage import SearchStore, load_templates, make_store
from iot_pipeline.worker.app import app

log = logging.getLogger(__name__)


@cache
def _store() -> SearchStore:
    settings = get_settings()
    store = make_store(settings)
    store.ensure_templates(
        load_templates(settings.search_templates_dir, settings.search_index_prefix)
    )
    try:  # readings stored before the registry existed: register their sensors once
        registry.ensure(store, settings.search_index_prefix, datetime.now(UTC))
    except StoreError as exc:  # new ranges fill the registry anyway
        log.warning("sensor registry not built from the stored readings: %s", exc)
    return store


@cache
def _state_client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url)


@worker_process_init.connect
def _prepare_process(**_: object) -> None:
    """Apply the index templates when a worker process starts (idempotent)."""
    try:
        _store()
    except TransientStoreError as exc:  # the first task will try again
        log.warning("index templates not applied yet: %s", exc)


_log_tokens: dict[str, Token[Any]] = {}


@task_prerun.connect
def _bind_batch(task_id: str, args: tuple[Any, ...] = (), **_: object) -> None:
    """Every line logged while a task runs (Celery's own included) names its batch."""
    task = args[0] if args and isinstance(args[0], dict) else {}
    fields: dict[str, object] = {"batch_id": task.get("batch_id"), "task_id": task_id}
    with suppress(ValidationError):  # the task itself reports a malformed range
        fields["range"] = str(OffsetRange.model_validate(task.get("range")))
    _log_tokens[task_id] = bind(**fields)


@task_postrun.connect
def _unbind_batch(task_id: str, **_: object) -> None:
    token = _log_tokens.pop(task_id, None)
    if token is not None:
        unbind(token)


@app.task(
    name=PROCESS_RANGE,
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=6,
)
def process_range_task(self: Task[Any, Any], task: dict[str, Any]) -> dict[str, object]:
    """Process one offset range; `task` is a RangeTask as JSON (keys, not payloads)."""
    try:
        return _process(self, task)
    except (TransientError, Retry, RangeRedelivered, StoreRefused):
        raise  # the orchestrator tells these apart: never the records' fault
    except redis.ConnectionError as exc:
        # Redis holds the cleaner state, the notes and the locks all through a range: its
        # client's errors are translated here, at the task's edge
        raise RedisUnavailable(f"Redis does not answer: {exc}") from exc
    except Exception as exc:
        # One class every process can rebuild, with the original's name in the message: the
        # orchestrator reports and quarantines on it (a pydantic or client error would reach
        # it as a bare "Exception").
        raise RangeFailed(f"{type(exc).__name__}: {str(exc)[:1000]}") from exc


def _process(self: Task[Any, Any], task: dict[str, Any]) -> dict[str, object]:
    range_task = RangeTask.model_validate(task)
    settings = get_settings()
    client = _state_client()
    _count_delivery(client, settings, str(self.request.id), int(self.request.retries or 0))
    r = range_task.range
    scope = f"replay:{range_task.batch_id}:" if range_task.replay else ""
    name = f"{settings.search_index_prefix}:range-lock:{scope}{r.topic}:{r.partition}"
    with held_lock(client, name) as acquired:
        if not acquired:
            busy = PartitionBusy(f"another task is processing {r.topic}[{r.partition}]")
            raise self.retry(exc=busy, countdown=LOCK_SECONDS / 2)
        return process_range(settings, _store(), client, range_task).to_json()


LOCK_SECONDS = 30  # a dead worker's partition lock frees itself this soon


class SettleBusy(TransientError):
    """Another task is settling a run's work across partitions: one at a time, each takes
    everything pending."""


@app.task(
    name=SETTLE_RUN,
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=1,
    retry_backoff_max=10,
    retry_jitter=True,
    max_retries=30,
)
def settle_run_task(self: Task[Any, Any], batch_id: str) -> dict[str, object]:
    """Settle the work the ranges left across partitions (district windows, buddy check)."""
    settings = get_settings()
    client = _state_client()
    name = f"{settings.search_index_prefix}:settle-lock"
    try:
        with held_lock(client, name) as acquired:
            if not acquired:
                raise self.retry(exc=SettleBusy("another settle is running"), countdown=1)
            settled = across_partitions.settle(
                client,
                _store(),
                settings.search_index_prefix,
                settings.sensor_sample_interval_seconds,
                parallel=settings.worker_concurrency,
            )
        return {"batch_id": batch_id, **settled.as_dict()}
    except redis.ConnectionError as exc:
        raise RedisUnavailable(f"Redis does not answer: {exc}") from exc


class OverridesBusy(TransientError):
    """Another task is settling an override of the same sensor: one at a time per sensor, so
    the last one reads the most."""


@app.task(
    name=SETTLE_OVERRIDE,
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    # a burst of one sensor's overrides waits its turn (5 s apart while busy) for up to about
    # half an hour; the daily sweep sends what still waits after that
    max_retries=360,
    ignore_result=True,  # the outcome is on the override's document
)
def settle_override_task(self: Task[Any, Any], override_id: str) -> dict[str, object]:
    """Apply a new override on the stored readings, or revert a deleted one (idempotent)."""
    settings = get_settings()
    client = _state_client()
    # one settlement per sensor at a time (the last one reads the most); other sensors'
    # overrides settle side by side, so a burst waits minutes, not a day
    sensor = overrides.sensor_of(_store(), settings.search_index_prefix, override_id)
    name = f"{settings.search_index_prefix}:qc-overrides-lock:{sensor or override_id}"
    try:
        with held_lock(client, name) as acquired:
            if not acquired:
                busy = OverridesBusy(f"another task is settling an override of {sensor}")
                raise self.retry(exc=busy, countdown=LOCK_SECONDS / 6)
            settled = overrides.settle(
                _store(),
                settings.search_index_prefix,
                override_id,
                settings.sensor_sample_interval_seconds,
            )
        if settled.more:  # the next slice is a task of its own (processing.overrides)
            send_settle(app, override_id)
        return settled.as_dict()
    except redis.ConnectionError as exc:
        raise RedisUnavailable(f"Redis does not answer: {exc}") from exc


@contextmanager
def held_lock(client: redis.Redis, name: str) -> Iterator[bool]:
    """A Redis lock kept alive while the block runs: renewed every third of its time-to-live
    by a thread, so a long range keeps it and a killed worker loses it within LOCK_SECONDS."""
    # not thread-local: the renewing thread must see the token the task's thread acquired
    lock = client.lock(name, timeout=LOCK_SECONDS, thread_local=False)
    if not lock.acquire(blocking=False):
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(LOCK_SECONDS / 3):
            with suppress(redis.RedisError):
                lock.reacquire()

    renewer = threading.Thread(target=renew, name="range-lock", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        with suppress(redis.RedisError):
            lock.release()


def _count_delivery(client: redis.Redis, settings: Settings, task_id: str, retry: int) -> None:
    """Count starts of this attempt: a worker that died mid-task (killed, out of memory)
    gets the task redelivered, but only `WORKER_MAX_DELIVERIES` times."""
    key = f"{settings.search_index_prefix}:deliveries:{task_id}:{retry}"
    starts = int(client.incr(key))
    client.expire(key, 24 * 3600)
    if starts > settings.worker_max_deliveries:
        raise RangeRedelivered(
            f"started {starts} times without finishing (its worker died each time); "
            f"given up after WORKER_MAX_DELIVERIES={settings.worker_max_deliveries}"
        )
