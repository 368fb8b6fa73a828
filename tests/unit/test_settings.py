"""Settings: defaults, environment overrides and clear refusals of bad values."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from iot_pipeline.settings import Settings, StackSettings, split_host_port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No .env and no pipeline variables: the built-in defaults apply."""
    monkeypatch.chdir(tmp_path)
    for name in list(StackSettings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    return tmp_path


def test_defaults_match_the_original_design(clean_env: Path) -> None:
    settings = Settings()
    assert settings.kafka_brokers == "127.0.0.1:9092"
    assert settings.kafka_sensor_data_topic == "iot_sensor_data"
    assert settings.dead_letter_topic == "iot_sensor_data.dlq"
    assert settings.data_generator_interval_seconds == 5.0
    assert settings.search_address == ("127.0.0.1", 9200)
    assert settings.redis_address == ("127.0.0.1", 6379)


def test_environment_overrides_and_env_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("KAFKA_SENSOR_DATA_TOPIC=from_file\nSEARCH_INDEX_PREFIX=a\n")
    monkeypatch.setenv("SEARCH_INDEX_PREFIX", "from-env")
    monkeypatch.setenv("KAFKA_BROKERS", " 127.0.0.1:9192 , localhost:9193 ")
    settings = Settings()
    assert settings.kafka_sensor_data_topic == "from_file"
    assert settings.search_index_prefix == "from-env"
    assert settings.kafka_brokers == "127.0.0.1:9192,localhost:9193"
    assert settings.kafka_bootstrap == ("127.0.0.1", 9192)
    assert settings.dead_letter_topic == "from_file.dlq"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KAFKA_BROKERS", "kafka", "host:port"),
        ("KAFKA_BROKERS", "", "host:port"),
        ("KAFKA_SENSOR_DATA_TOPIC", "bad topic!", "invalid Kafka topic"),
        ("SEARCH_INDEX_PREFIX", "Upper", "lower-case"),
        ("SEARCH_URL", "127.0.0.1:9200", "not a URL"),
        ("DATA_GENERATOR_INTERVAL_SECONDS", "0", "greater than 0"),
        ("SEARCH_ENGINE", "solr", "opensearch"),
        ("OPENSEARCH_HEAP", "xx", "512m or 1g"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        StackSettings()  # the runtime settings and the native stack's


def test_placeholder_secret_refused_outside_local(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCH_PASSWORD", "changeme")
    assert Settings().app_env == "local"  # tolerated for local use
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()


def test_secret_is_not_printed(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_PASSWORD", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(Settings())


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("http://localhost:9201", ("localhost", 9201)),
        ("redis://127.0.0.1/0", ("127.0.0.1", 6379)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address, 6379) == expected


@pytest.mark.parametrize("env", ["test", "production"])
def test_the_api_refuses_to_start_open_outside_local(env: str) -> None:
    from iot_pipeline.api.app import ApiKeyRequired, create_app

    with pytest.raises(ApiKeyRequired, match=f"API_KEY is empty with APP_ENV={env}"):
        create_app(Settings(app_env=env, api_key=""))
    assert create_app(Settings(app_env=env, api_key="k" * 32)).title  # a key: it starts
    assert create_app(Settings(app_env="local", api_key="")).title  # a laptop may stay open


def test_the_native_stack_settings_are_not_the_pipelines() -> None:
    """The pipeline's processes run with `Settings`; what only `make up` needs is added by
    `StackSettings`, and the configuration table marks each of those."""
    from pathlib import Path

    own = set(StackSettings.model_fields) - set(Settings.model_fields)
    assert {"stack_dir", "kafka_heap", "java_home", "api_enabled"} <= own
    table = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    rows = {
        line.split("`")[1].lower(): line for line in table.splitlines() if line.startswith("| `")
    }
    assert sorted(n for n in own if "*Native stack.*" not in rows[n]) == []
    assert sorted(n for n, row in rows.items() if "*Native stack.*" in row and n not in own) == []
