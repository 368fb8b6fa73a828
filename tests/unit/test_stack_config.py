"""The native stack's generated configuration, without starting anything."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.airflow_services import (
    admin_password,
    password_file,
    retire_leaked_password,
)
from iot_pipeline.stack.cli import _print_airflow_login
from iot_pipeline.stack.model import StackError, StackPaths
from iot_pipeline.stack.services import native_services
from iot_pipeline.stack.supervisor import START_RETRIES, START_SECONDS, Supervisor, render_config
from iot_pipeline.topics import load_topic_specs, topic_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(stack_dir=tmp_path / "stack", kafka_topics_file=ROOT / "kafka/topics.json")


def test_every_service_is_supervised_and_started_on_demand(settings: StackSettings) -> None:
    services = native_services(settings)
    assert [s.name for s in services] == [
        "redis",
        "kafka",
        "opensearch",
        "worker",
        "generator",
        "api",
        "airflow-api",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ]
    assert [s.phase for s in services] == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    off = settings.model_copy(
        update={"data_generator_enabled": False, "airflow_enabled": False, "api_enabled": False}
    )
    assert [s.name for s in native_services(off)] == ["redis", "kafka", "opensearch", "worker"]
    config = render_config(StackPaths.from_settings(settings), services, Path("/work"))
    for service in services:
        assert f"[program:{service.name}]" in config
    assert config.count("autostart=false") == len(services)
    assert config.count("stopasgroup=true") == len(services)


def test_services_bind_where_the_settings_point(settings: StackSettings) -> None:
    custom = settings.model_copy(
        update={
            "kafka_brokers": "127.0.0.1:19092",
            "search_url": "http://127.0.0.1:19200",
            "redis_url": "redis://127.0.0.1:16379/0",
        }
    )
    by_name = {s.name: s for s in native_services(custom)}
    assert by_name["kafka"].address == ("127.0.0.1", 19092)
    # the runner gives its first node base+1
    assert (
        by_name["opensearch"].command[by_name["opensearch"].command.index("-baseHttpPort") + 1]
        == "19199"
    )
    redis_cmd = by_name["redis"].command
    assert redis_cmd[redis_cmd.index("--port") + 1] == "16379"
    assert redis_cmd[redis_cmd.index("--bind") + 1] == "127.0.0.1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kafka_brokers", "0.0.0.0:9092"),
        ("search_url", "http://10.1.2.3:9200"),
        ("redis_url", "redis://redis:6379/0"),
    ],
)
def test_native_stack_refuses_non_loopback_addresses(
    settings: StackSettings, field: str, value: str
) -> None:
    with pytest.raises(StackError, match="loopback"):
        native_services(settings.model_copy(update={field: value}))


def test_percent_signs_in_commands_are_escaped_for_supervisor(
    settings: StackSettings, tmp_path: Path
) -> None:
    odd = tmp_path / "100%"
    services = native_services(settings.model_copy(update={"stack_dir": odd}))
    config = render_config(StackPaths(odd), services, Path("/w"))
    assert f"{tmp_path}/100%%" in config.split("[program:redis]")[1]


def test_topic_definitions(settings: StackSettings) -> None:
    specs = {spec.role: spec for spec in load_topic_specs(settings.kafka_topics_file)}
    assert specs["sensor_data"].partitions == 6
    assert specs["dead_letter"].partitions >= 1
    assert topic_names(settings) == {
        "sensor_data": "iot_sensor_data",
        "dead_letter": "iot_sensor_data.dlq",
    }


def test_missing_topic_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="KAFKA_TOPICS_FILE"):
        load_topic_specs(tmp_path / "nope.json")


def test_airflow_gets_generated_secrets_loopback_and_our_dags(settings: StackSettings) -> None:
    services = {s.name: s for s in native_services(settings)}
    env = services["airflow-scheduler"].environment
    assert env == services["airflow-api"].environment  # one JWT secret for all components
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("airflow/dags")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert len(env[key]) >= 40
    secrets_file = settings.stack_dir / "airflow" / "secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    # stable across calls (the running processes must agree), different per stack
    assert native_services(settings)[-1].environment == env
    other = settings.model_copy(update={"stack_dir": settings.stack_dir.parent / "other"})
    other_env = native_services(other)[-1].environment
    assert other_env["AIRFLOW__API_AUTH__JWT_SECRET"] != env["AIRFLOW__API_AUTH__JWT_SECRET"]
    config = render_config(StackPaths.from_settings(settings), list(services.values()), ROOT)
    assert config.count("AIRFLOW__API_AUTH__JWT_SECRET") == 4


def test_every_program_restarts_with_backoff_and_a_bound(settings: StackSettings) -> None:
    services = native_services(settings)
    config = render_config(StackPaths.from_settings(settings), services, Path("/work"))
    assert config.count("autorestart=true") == len(services)
    assert config.count(f"startretries={START_RETRIES}") == len(services)
    assert config.count(f"startsecs={START_SECONDS}") == len(services)
    assert START_RETRIES >= 1
    assert "umask=077" in config.split("[program:")[0]
    # through the launcher, which ends what a crashed earlier start left behind
    scheduler = config.split("[program:airflow-scheduler]")[1].split("[program:")[0]
    assert "-m iot_pipeline.stack.launch" in scheduler
    assert "airflow-scheduler.pgid -- " in scheduler


def test_redis_is_durable_and_bounded(settings: StackSettings) -> None:
    command = {s.name: s for s in native_services(settings)}["redis"].command
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory") + 1] == settings.redis_maxmemory
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    with pytest.raises(ValidationError, match="redis_maxmemory"):
        StackSettings(redis_maxmemory="lots")


def test_the_admin_password_is_ours_private_and_never_printed(
    settings: StackSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    native_services(settings)  # builds the Airflow environment
    path = password_file(settings.stack_dir.resolve())
    assert path.stat().st_mode & 0o777 == 0o600
    password = admin_password(settings.stack_dir.resolve())
    assert password is not None
    assert len(password) >= 16
    # a password file an older version let Airflow write world-readable is made private
    path.chmod(0o644)
    native_services(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert admin_password(settings.stack_dir.resolve()) == password
    # output that is not a terminal (a CI log, a file) names the file instead
    _print_airflow_login(settings, StackPaths.from_settings(settings))
    out = capsys.readouterr().out
    assert password not in out
    assert "simple_auth_manager_passwords.json.generated" in out


def test_restarts_are_counted_from_supervisords_log(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    paths.logs.mkdir()
    (paths.logs / "supervisord.log").write_text(
        "2026-11-29 01:00:00,000 INFO supervisord started with pid 10\n"
        "2026-11-29 01:00:05,000 WARN exited: worker (terminated by SIGKILL; not expected)\n"
        "2026-11-29 01:00:06,000 INFO supervisord started with pid 20\n"
        "2026-11-29 01:00:07,000 INFO spawned: 'worker' with pid 21\n"
        "2026-11-29 01:01:00,000 WARN exited: worker (terminated by SIGKILL; not expected)\n"
        "2026-11-29 01:01:01,000 INFO spawned: 'worker' with pid 22\n"
        "2026-11-29 01:02:00,000 WARN exited: airflow-scheduler (exit status 1; not expected)\n"
        "2026-11-29 01:03:00,000 INFO stopped: api (terminated by SIGTERM)\n",
        encoding="utf-8",
    )
    assert Supervisor(paths).restarts() == {"worker": 1, "airflow-scheduler": 1}
    assert Supervisor(StackPaths(tmp_path / "none")).restarts() == {}


def test_a_password_printed_in_a_log_is_replaced(settings: StackSettings, tmp_path: Path) -> None:
    native_services(settings)
    root = settings.stack_dir.resolve()
    old = admin_password(root)
    assert old is not None
    log = tmp_path / "airflow-api.log"
    log.write_text("Simple auth manager | Password for user 'admin': unrelated\n", encoding="utf-8")
    assert not retire_leaked_password(root, log)
    assert admin_password(root) == old
    log.write_text(f"Simple auth manager | Password for user 'admin': {old}\n", encoding="utf-8")
    assert retire_leaked_password(root, log)
    new = admin_password(root)
    assert new not in (None, old)
    assert password_file(root).stat().st_mode & 0o777 == 0o600
