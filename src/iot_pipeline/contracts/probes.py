"""Readiness probes: is each backing service up and answering as what it should be?"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iot_pipeline.settings import Settings


@dataclass(frozen=True)
class Health:
    """The outcome of one probe: ready or not, and a short human-readable detail."""

    ok: bool
    detail: str
    off: bool = False  # deliberately not running (disabled when the stack was started)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_health(settings: Settings) -> Health:
    """PING Redis and report its version."""
    import redis

    host, port = settings.redis_address
    if not port_open(host, port):
        return Health(False, f"nothing listening on {host}:{port}")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except redis.RedisError as exc:
        return Health(False, f"{host}:{port} does not answer as Redis: {exc}")
    finally:
        client.close()
    return Health(True, f"{host}:{port}, redis {version}")


def kafka_health(settings: Settings) -> Health:
    """Fetch cluster metadata from the bootstrap servers."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, port = settings.kafka_bootstrap
    if not port_open(host, port):
        return Health(False, f"nothing listening on {host}:{port}")
    # log_level 0: a probe that fails is reported by us, not by librdkafka on stderr.
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=3)
    except KafkaException as exc:
        return Health(False, f"{host}:{port} does not answer as Kafka: {exc.args[0].str()}")
    if not metadata.brokers:
        return Health(False, f"{host}:{port} reports no brokers yet")
    return Health(True, f"{host}:{port}, {len(metadata.brokers)} broker(s)")


def search_health(settings: Settings) -> Health:
    """Ask the search engine for its cluster health (green or yellow is ready)."""
    request = urllib.request.Request(f"{settings.search_url}/_cluster/health")  # noqa: S310
    if settings.search_username:
        token = f"{settings.search_username}:{settings.search_password.get_secret_value()}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    host, port = settings.search_address
    if not port_open(host, port):
        return Health(False, f"nothing listening on {host}:{port}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Health(False, f"{settings.search_url} does not answer as a search engine: {exc}")
    status = body.get("status", "unknown")
    return Health(status in ("green", "yellow"), f"{settings.search_url}, cluster {status}")


def local_json(port: int, path: str, what: str) -> tuple[Any, Health | None]:
    """GET a JSON document from a loopback HTTP service: (body, None) or (None, why not)."""
    host = "127.0.0.1"
    if not port_open(host, port):
        return None, Health(False, f"nothing listening on {host}:{port}")
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read()), None
    except urllib.error.HTTPError as exc:
        return None, Health(False, f"{url} answered {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, Health(False, f"{url} does not answer as {what}: {exc}")


def api_health(settings: Settings) -> Health:
    """The REST API's /ready: the process answers and so does its search store."""
    body, failed = local_json(settings.api_port, "/ready", "the API")
    if failed is not None:
        return failed
    return Health(
        body.get("status") == "ready", f"http://127.0.0.1:{settings.api_port} (docs at /docs)"
    )


WORKER_NODE = "worker@%h"  # the native stack's Celery node name (%h: this host's name)


def worker_health(settings: Settings, timeout: float = 2.0) -> Health:
    """This host's Celery worker (`worker@<hostname>`) answers a ping through the broker, so
    it consumes tasks."""
    from iot_pipeline.contracts.tasks import create_app

    node = WORKER_NODE.replace("%h", socket.gethostname())
    app = create_app(settings)
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:  # any broker error means "not answering"
        return Health(False, f"{node} cannot be pinged: {type(exc).__name__}: {exc}"[:200])
    finally:
        app.close()
    if not any(node in reply for reply in replies or []):
        return Health(False, f"{node} did not answer a ping within {timeout:.0f} s")
    return Health(True, f"{node} answers a ping")


def heartbeat_health(path: Path | None, interval: float) -> Health:
    """The simulator proves its loop runs: its heartbeat file was touched within three rounds
    (at least 30 s)."""
    if path is None:
        return Health(False, "DATA_GENERATOR_HEARTBEAT_FILE is not set")
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return Health(False, f"no heartbeat yet at {path}")
    limit = max(30.0, 3 * interval)
    if age > limit:
        return Health(False, f"last round {age:.0f} s ago (limit {limit:.0f} s)")
    return Health(True, f"last round {age:.0f} s ago")
