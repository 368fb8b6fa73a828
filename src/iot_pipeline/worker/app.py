"""The worker's Celery application (its configuration, the task names and the task client
are `contracts.tasks`) and its signals."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import celeryd_after_setup, setup_logging, worker_ready

from iot_pipeline.contracts.tasks import create_app
from iot_pipeline.logs import configure
from iot_pipeline.settings import get_settings

log = logging.getLogger("iot_pipeline.worker")
app = create_app(get_settings())


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    """Our log lines instead of Celery's (connecting here turns Celery's own setup off)."""
    configure("worker", get_settings().log_format)


_booted_at: list[float] = []


@celeryd_after_setup.connect
def _announce(sender: str, instance: Any, **_: object) -> None:
    """What Celery's banner says, as one log line: who, how many processes, which queues."""
    _booted_at.append(time.time())
    queues = sorted(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)
    log.info(
        "worker %s ready: %s processes, queues %s",
        sender,
        instance.concurrency,
        ", ".join(queues),
        extra={"fields": {"hostname": sender, "concurrency": instance.concurrency}},
    )


@worker_ready.connect
def _take_back_orphans(sender: Any, **_: object) -> None:
    """Requeue what a dead worker (an earlier run of this one, say) was holding."""
    from iot_pipeline.worker.recovery import take_back_orphans

    booted_at = _booted_at[0] if _booted_at else time.time()
    taken = take_back_orphans(sender.app, sender.hostname, booted_at)
    if taken:
        log.info("requeued %d task(s) of dead workers", taken)
