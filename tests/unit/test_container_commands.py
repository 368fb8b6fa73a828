"""What each container runs: the native stack's command, a module that exists and imports
with only the dependencies its image installs."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.services import native_services

from support.compose_model import COMPOSE, ROOT, compose, dockerfile

# Option values that legitimately differ between a container and the native stack.
VARYING_OPTIONS = {"--host", "--port", "--concurrency"}
OUR_PACKAGE = "iot-pipeline"


@cache
def _model() -> dict[str, Any]:
    return compose(COMPOSE)[0]


def _built_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _model()["services"].items() if "build" in s}


def _image_command(service: dict[str, Any]) -> list[str]:
    """The command the container runs: compose's `command`, else the Dockerfile's CMD."""
    if service.get("command"):
        command = service["command"]
        return shlex.split(command) if isinstance(command, str) else list(command)
    cmd = [i for i in dockerfile(ROOT / service["build"]["dockerfile"]) if i.keyword == "CMD"]
    return cmd[-1].exec_form() or []


def _extras(service: dict[str, Any]) -> list[str]:
    """The extras the image installs (`python requirements.py <extras>` in its Dockerfile)."""
    instructions = dockerfile(ROOT / service["build"]["dockerfile"])
    defaults = {
        name.strip(): value.strip()
        for i in instructions
        if i.keyword == "ARG" and "=" in i.arguments
        for name, _, value in [i.arguments.partition("=")]
    }
    defaults.update(service["build"].get("args") or {})
    run = next(
        i.arguments for i in instructions if i.keyword == "RUN" and "requirements.py" in i.arguments
    )
    words = re.search(r"requirements\.py ([^>]+)>", run).group(1)  # type: ignore[union-attr]
    expanded = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], words)
    return expanded.split()


def _normalise(command: list[str]) -> list[str]:
    workdir = str(Path.cwd()) + "/"
    out: list[str] = []
    for word in command:
        if out and out[-1] in VARYING_OPTIONS:
            out.append("*")
            continue
        word = "python" if word == sys.executable else word
        out.append(word.removeprefix(workdir))
    return out


@pytest.mark.parametrize(
    ("container", "native"),
    [("worker", "worker"), ("data_generator", "generator"), ("api", "api")],
)
def test_container_runs_the_native_command(container: str, native: str) -> None:
    """The tests exercise the native stack's commands; the containers run the same ones."""
    services = {s.name: s for s in native_services(StackSettings(_env_file=None))}
    assert _normalise(_image_command(_built_services()[container])) == _normalise(
        services[native].command
    )


def _runs(command: list[str]) -> tuple[str, str]:
    """(kind, target) of a Python command: ('module', name) or ('script', path)."""
    if command[:2] == ["python", "-m"]:
        return "module", command[2]
    if command[0] == "python":
        return "script", command[1]
    if command[0] == "celery":
        app = command[command.index("--app") + 1].split(":")[0]
        return "module", app
    raise AssertionError(f"not a Python command: {command}")


# Imports the targets in a fresh interpreter where every distribution the image does not
# install is unimportable: optional imports degrade as they would in the image, required
# ones fail the test.
_LOADER = """
import importlib, importlib.abc, json, runpy, sys
blocked = set(json.loads(sys.argv[1]))

class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"{{name}} is not installed in this image", name=name)
        return None

sys.meta_path.insert(0, NotInImage())
sys.path.insert(0, {app_dir!r})
for kind, target in {targets!r}:
    if kind == "script":
        runpy.run_path(target, run_name="__container_check__")
    else:
        importlib.import_module(target)
"""


def _import_as_in_image(targets: list[tuple[str, str]], app_dir: str, allowed: set[str]) -> None:
    blocked = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if module not in sys.stdlib_module_names
        and not any(d.lower().replace("_", "-") in allowed for d in dists)
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _LOADER.format(targets=targets, app_dir=app_dir),
            json.dumps(blocked),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "json", "HOME": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in (markers and extras evaluated)."""
    seen: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            dependency = Requirement(text)
            if dependency.marker is None:
                pending.append(dependency)
                continue
            for extra in {"", *requirement.extras}:
                if dependency.marker.evaluate({"extra": extra}):
                    pending.append(dependency)
                    break
    return {k for k in seen if "[" not in k}


def _requirements(extras: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "scripts/requirements.py", *extras],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.split()


PYTHON_SERVICES = ["worker", "data_generator", "api", "kafka-topics", "search-templates", "flower"]


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_container_module_imports_with_only_its_image_dependencies(name: str) -> None:
    service = _built_services()[name]
    command = _image_command(service)
    kind, target = _runs(command)
    copied = " ".join(
        i.arguments
        for i in dockerfile(ROOT / service["build"]["dockerfile"])
        if i.keyword == "COPY"
    )
    if kind == "script":
        assert (ROOT / target).is_file(), f"{name}: {target} does not exist"
        folder = str(Path(target).parent)
        assert folder in copied or target.split("/")[0] in copied, f"{name}: {target} not copied"
    else:
        assert importlib.util.find_spec(target), f"{name}: no module {target}"
    targets = [(kind, target), ("module", "iot_pipeline.container.entrypoint")]
    targets.append(("module", "iot_pipeline.container.health"))
    if name == "worker":
        targets.append(("module", "iot_pipeline.worker.tasks"))  # what Celery loads
    if name == "flower":
        targets.append(("module", "flower"))
    app_dir = str(ROOT / "fastapi" / "app")
    if "--app-dir" in command:
        app_dir = str(ROOT / command[command.index("--app-dir") + 1])
        targets.append(("module", command[command.index("--app-dir") + 2].split(":")[0]))
    allowed = _closure(_requirements(_extras(service))) | {OUR_PACKAGE}
    _import_as_in_image(targets, app_dir, allowed)


@pytest.mark.parametrize(
    ("name", "folders"),
    [
        ("kafka-topics", ["kafka"]),
        ("search-templates", ["elasticsearch"]),
        ("worker", ["elasticsearch"]),
    ],
)
def test_files_read_at_run_time_are_in_the_image(name: str, folders: list[str]) -> None:
    """Topic definitions and index templates are read from the working directory."""
    service = _built_services()[name]
    instructions = dockerfile(ROOT / service["build"]["dockerfile"])
    copied = [i.arguments.split() for i in instructions if i.keyword == "COPY"]
    for folder in folders:
        assert [folder, f"./{folder}"] in copied, f"{name}: {folder}/ is not copied to the workdir"
