"""The running native stack: healthy, on loopback only, with the pipeline's topics."""

import ipaddress
import socket
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.topics import load_topic_specs


def test_status_reports_every_service_ready() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "iot_pipeline.stack", "status"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("redis", "kafka", "opensearch"):
        assert any(
            line.startswith(name) and "ready:" in line for line in result.stdout.splitlines()
        ), result.stdout


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_services_are_not_reachable_from_other_interfaces(base_settings: StackSettings) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for host_port in (
        base_settings.kafka_bootstrap,
        base_settings.search_address,
        base_settings.redis_address,
        ("127.0.0.1", base_settings.kafka_controller_port),
    ):
        port = host_port[1]
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex((address, port)) != 0, f"port {port} is open on {address}"


def test_no_stack_process_listens_beyond_loopback(base_settings: StackSettings) -> None:
    """Every socket any process of the stack listens on (Airflow's helpers included)."""
    import psutil

    pid_file = StackPaths.from_settings(base_settings).run / "supervisord.pid"
    if not pid_file.exists():
        pytest.skip("the stack was not started by `make up` (no supervisord here)")
    root = psutil.Process(int(pid_file.read_text()))
    pids = {root.pid} | {child.pid for child in root.children(recursive=True)}
    exposed = sorted(
        f"{c.laddr.ip}:{c.laddr.port} (pid {c.pid})"
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids and not _is_loopback(c.laddr.ip)
    )
    assert exposed == []


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # Java binds ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_pipeline_topics_exist(base_settings: StackSettings) -> None:
    specs = {s.role: s for s in load_topic_specs(base_settings.kafka_topics_file)}
    topics = (
        AdminClient({"bootstrap.servers": base_settings.kafka_brokers})
        .list_topics(timeout=10)
        .topics
    )
    data = topics[base_settings.kafka_sensor_data_topic]
    assert len(data.partitions) == specs["sensor_data"].partitions
    assert base_settings.dead_letter_topic in topics
