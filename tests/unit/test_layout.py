"""The service folders must never shadow the libraries they are named after."""

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_FOLDERS = ["airflow", "celery", "fastapi", "elasticsearch", "kafka"]
SITE_DIRS = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}


@pytest.mark.parametrize("folder", SERVICE_FOLDERS)
def test_service_folder_is_not_a_package(folder: str) -> None:
    assert (ROOT / folder).is_dir(), f"{folder}/ is part of the user's layout"
    assert not (ROOT / folder / "__init__.py").exists(), (
        f"{folder}/__init__.py would shadow the real '{folder}' library"
    )


@pytest.mark.parametrize("library", ["celery", "fastapi", "airflow", "elasticsearch"])
def test_library_imports_from_site_packages(library: str) -> None:
    # `python -c` from the project root puts the root first on sys.path: the worst case.
    result = subprocess.run(
        [sys.executable, "-c", f"import {library}; print({library}.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    origin = Path(result.stdout.strip().splitlines()[-1]).resolve()
    assert any(site in origin.parents for site in SITE_DIRS), (
        f"'{library}' was imported from {origin}, not from site-packages {SITE_DIRS}"
    )


# The container entry point rewrites the environment (secret references) before any
# component, and so before any Settings, exists.
ENVIRONMENT_READERS = {"settings.py", "entrypoint.py"}


def test_only_settings_reads_the_environment() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "src").rglob("*.py")
        if path.name not in ENVIRONMENT_READERS
        and any(token in path.read_text() for token in ("os.environ", "os.getenv", "getenv("))
    ]
    assert offenders == [], "read configuration through iot_pipeline.settings.Settings"


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    from iot_pipeline.settings import StackSettings

    table = (ROOT / "docs" / "configuration.md").read_text()
    missing = [n.upper() for n in StackSettings.model_fields if f"`{n.upper()}`" not in table]
    assert missing == [], "add these to docs/configuration.md's configuration table"


def _anchors(page: Path) -> set[str]:
    """The anchors a forge derives from a page's headings (outside code blocks)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#{1,6}\s+(.*)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_link_of_the_docs_resolves_inside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken, checked = [], 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists() or not dest.is_relative_to(ROOT):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert checked > 20
    assert broken == []


def test_the_readme_stays_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, "move details into docs/ and link them"
    # the two commands come first
    assert lines[2] == "```bash"
    assert lines[3].startswith("make up")
    assert lines[4].startswith("make test")


# Rooms of the package a room may not import (at any depth, deferred imports included):
# what two processes exchange lives on the `contracts` floor, so a reader never imports the
# writer's room.
PACKAGE = ROOT / "src" / "iot_pipeline"
FORBIDDEN = {
    "api": {"processing", "orchestration", "worker", "stack", "generator"},
    "container": {"stack", "processing", "orchestration"},
    "contracts": {"api", "processing", "orchestration", "worker", "stack", "container"},
    "cleaning": {"storage", "processing", "orchestration", "worker", "api", "stack"},
    "aggregation": {"processing", "orchestration", "worker", "api", "stack"},
    "processing": {"orchestration", "worker", "api", "stack"},
}


def _imports(path: Path) -> set[str]:
    """The package-internal modules a file imports, wherever the import statement is."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("iot_pipeline.")}


def _room(module: str) -> str:
    return module.split(".")[1]


def test_each_room_imports_only_the_floors_below_it() -> None:
    offenders = []
    for room, banned in FORBIDDEN.items():
        for path in sorted((PACKAGE / room).rglob("*.py")):
            for module in _imports(path):
                if _room(module) in banned:
                    offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_the_rooms_import_each_other_without_a_circle() -> None:
    """Module-level imports between rooms (packages and top-level modules) form no cycle."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        room = parts[0].removesuffix(".py")
        edges = graph.setdefault(room, set())
        edges.update(_room(m) for m in _imports(path) if _room(m) != room)
    # depth-first search for a back edge
    state: dict[str, int] = {}

    def visit(room: str, trail: list[str]) -> list[str]:
        state[room] = 1
        for other in sorted(graph.get(room, ())):
            if state.get(other) == 1:
                return [*trail, room, other]
            if other not in state and (cycle := visit(other, [*trail, room])):
                return cycle
        state[room] = 2
        return []

    for room in sorted(graph):
        if room not in state:
            assert not (cycle := visit(room, [])), " -> ".join(cycle)


def test_importing_the_orchestration_builds_no_celery_app() -> None:
    """The DAGs import the orchestration at parse time: no Celery app (broker connection
    pool, worker config) may come with it, nor may the worker's module be loaded."""
    code = (
        "import sys, celery._state as s\n"
        "import iot_pipeline.orchestration.etl, iot_pipeline.orchestration.batches\n"
        "import iot_pipeline.orchestration.override_sweep, iot_pipeline.api.app\n"
        "print(len(list(s._get_active_apps())), 'iot_pipeline.worker.app' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["0", "False"], result.stdout + result.stderr
