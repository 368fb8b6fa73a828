"""Integration tests run against the real native stack (`make up`)."""

import pytest


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every integration test needs the stack."""


@pytest.fixture(scope="module")
def store(settings):  # type: ignore[no-untyped-def]
    """The search store of the module's own `settings` (a fixture each module defines)."""
    from iot_pipeline.storage import make_store

    store = make_store(settings)
    yield store
    store.close()


@pytest.fixture
def make_topic(test_settings, run_id, request):  # type: ignore[no-untyped-def]
    """Create uniquely named topics (6 partitions by default); deleted after the test."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": test_settings.kafka_brokers})
    created: list[str] = []

    def make(suffix: str = "", partitions: int = 6) -> str:
        name = f"test.{run_id}.{request.node.name[:60]}{suffix}".replace("[", ".").replace("]", "")
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
            name
        ].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)
