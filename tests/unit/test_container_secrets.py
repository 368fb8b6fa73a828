"""Container secrets: generated once, referenced as {secret:name}, refused when unfit."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from iot_pipeline.container.entrypoint import EX_CONFIG, resolve, write_airflow_passwords
from iot_pipeline.container.secrets import NAMES, SecretError, check_value, generate


def test_generate_creates_each_secret_once(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = generate(folder)
    assert set(first) == NAMES
    assert set(first.values()) == {"created"}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    values = {name: (folder / name).read_text() for name in NAMES}
    assert len(set(values.values())) == len(NAMES)  # all different
    for value in values.values():
        check_value("x", value)
    again = generate(folder)
    assert set(again.values()) == {"kept"}
    assert {name: (folder / name).read_text() for name in NAMES} == values


def test_generate_refuses_a_placeholder_left_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "postgres_password").write_text("changeme\n")
    with pytest.raises(SecretError, match="postgres_password is a placeholder"):
        generate(folder)


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "empty"), ("  \n", "empty"), ("airflow", "placeholder"), ("short-secret", "characters")],
)
def test_unfit_values_are_refused(value: str, why: str) -> None:
    with pytest.raises(SecretError, match=why):
        check_value("api_key", value)


def test_resolve_replaces_references_inside_values(tmp_path: Path) -> None:
    (tmp_path / "postgres_password").write_text("p" * 20 + "\n")
    (tmp_path / "api_key").write_text("k" * 24)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:{secret:postgres_password}@db/a",
        "API_KEY": "{secret:api_key}",
        "PLAIN": "untouched",
    }
    out = resolve(env, tmp_path)
    assert out["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql://airflow:{'p' * 20}@db/a"
    assert out["API_KEY"] == "k" * 24
    assert out["PLAIN"] == "untouched"


def test_resolve_names_every_missing_secret(tmp_path: Path) -> None:
    env = {"A": "{secret:elastic_password}", "B": "{secret:api_key}"}
    with pytest.raises(SecretError) as caught:
        resolve(env, tmp_path)
    assert "elastic_password not found" in str(caught.value)
    assert "api_key not found" in str(caught.value)
    assert "make secrets" in str(caught.value)


def test_airflow_passwords_file_written_and_variable_dropped(tmp_path: Path) -> None:
    target = tmp_path / "auth" / "passwords.json"
    env = {
        "AIRFLOW_ADMIN_PASSWORD": "a" * 20,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(target),
    }
    write_airflow_passwords(env)
    assert "AIRFLOW_ADMIN_PASSWORD" not in env
    assert json.loads(target.read_text()) == {"admin": "a" * 20}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def _entrypoint(folder: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iot_pipeline.container.entrypoint", *command],
        env={**os.environ, "SECRETS_DIR": str(folder), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_entrypoint_execs_with_secrets_in_the_environment(tmp_path: Path) -> None:
    generate(tmp_path)
    probe = "import os; print(os.environ['SEARCH_PASSWORD'])"
    done = _entrypoint(
        tmp_path,
        sys.executable,
        "-c",
        probe,
        SEARCH_PASSWORD="{secret:elastic_password}",  # noqa: S106
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (tmp_path / "elastic_password").read_text()


def test_entrypoint_refuses_to_start_without_the_secret(tmp_path: Path) -> None:
    done = _entrypoint(tmp_path, "true", API_KEY="{secret:api_key}")
    assert done.returncode == EX_CONFIG
    assert "refusing to start true" in done.stderr
    assert "make secrets" in done.stderr


def test_search_users_job_checks_before_it_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    from iot_pipeline.container import search_users

    monkeypatch.setenv("SEARCH_ENGINE", "opensearch")
    assert search_users.main(["--wait", "0"]) == 0  # no security plugin: nothing to create
    monkeypatch.setenv("SEARCH_ENGINE", "elasticsearch")
    monkeypatch.setenv("SEARCH_USERNAME", "iot_writer")
    assert search_users.main(["--wait", "0"]) == 2  # only `elastic` may create logins
    monkeypatch.setenv("SEARCH_USERNAME", "elastic")
    monkeypatch.setenv("SEARCH_WRITER_PASSWORD", "changeme")
    monkeypatch.setenv("SEARCH_READER_PASSWORD", "r" * 32)
    assert search_users.main(["--wait", "0"]) == 2  # a placeholder password is refused


def test_search_users_creates_each_role_then_its_user() -> None:
    from iot_pipeline.container.search_users import LOGINS, apply

    calls: list[tuple[str, dict[str, object]]] = []

    class Security:
        def put_role(self, **body: object) -> None:
            calls.append(("role", body))

        def put_user(self, **body: object) -> None:
            calls.append(("user", body))

    class Client:
        security = Security()

    passwords = {login.user: f"{login.user}-password-0123456789" for login in LOGINS}
    lines = apply(Client(), "iot", passwords)
    assert len(lines) == len(LOGINS)
    for login, (role, user) in zip(LOGINS, zip(calls[::2], calls[1::2], strict=True), strict=True):
        assert role == ("role", {"name": login.user, **login.role_body("iot")})
        assert user[1] == {
            "username": login.user,
            "password": passwords[login.user],
            "roles": [login.user],
        }
