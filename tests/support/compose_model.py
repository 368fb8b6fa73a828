"""The container deployment as data, for static checks (no Docker engine on our machines).

Reads `.env` the way compose does for interpolation, loads the compose files (YAML merge
keys, `!override`/`!reset` tags), substitutes `${VAR}`, `${VAR:-default}`, `${VAR-default}`
and `$$`, merges override files with compose's rules, and parses Dockerfiles into
instructions.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
OPENSEARCH_OVERRIDE = ROOT / "docker-compose.opensearch.yml"
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$")


class Reset:
    """`!reset`: the key is removed when merged."""


@dataclass(frozen=True)
class Override:
    """`!override value`: replaces the merged value instead of merging into it."""

    value: Any


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no types here (no stubs)
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


_Loader.add_constructor("!override", _override)
_Loader.add_constructor("!reset", lambda _loader, _node: Reset())


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (safe subclass)


def dotenv(path: Path = ROOT / ".env") -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        values[key.strip()] = value.strip().strip("'\"")
    return values


@dataclass
class Interpolation:
    """Substitution of ${...} over a document, recording every variable referenced."""

    env: dict[str, str]
    referenced: set[str]
    undefined: set[str]

    def text(self, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            expression = match.group("braced") or match.group("named")
            parsed = _BRACED.match(expression)
            assert parsed, f"bad interpolation {match.group(0)!r}"
            name, op, arg = parsed.group("name"), parsed.group("op"), parsed.group("arg")
            self.referenced.add(name)
            present = name in self.env
            empty = present and self.env[name] == ""
            if op in (":-", "-"):
                if not present or (op == ":-" and empty):
                    return self.text(arg or "")
                return self.env[name]
            if op in (":?", "?"):
                if not present or (op == ":?" and empty):
                    self.undefined.add(name)
                return self.env.get(name, "")
            if op in (":+", "+"):
                return self.text(arg or "") if present and not (op == ":+" and empty) else ""
            if not present:
                self.undefined.add(name)
            return self.env.get(name, "")

        return _VARIABLE.sub(replace, value)

    def document(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, Override):
            return Override(self.document(node.value))
        if isinstance(node, dict):
            return {key: self.document(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.document(value) for value in node]
        return node


def strip_tags(node: Any) -> Any:
    """The document as plain data (tags applied as if nothing were merged)."""
    if isinstance(node, Override):
        return strip_tags(node.value)
    if isinstance(node, dict):
        return {k: strip_tags(v) for k, v in node.items() if not isinstance(v, Reset)}
    if isinstance(node, list):
        return [strip_tags(v) for v in node]
    return node


# Sequences compose appends to rather than replaces when merging files.
_APPENDED = {"ports", "expose", "dns", "dns_search", "tmpfs", "secrets", "volumes", "profiles"}


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file into a base file (what `-f a -f b` runs)."""
    if isinstance(override, Reset):
        return None
    if isinstance(override, Override):
        return strip_tags(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if isinstance(value, Reset):
                merged.pop(name, None)
            else:
                merged[name] = merge(base[name], value, name) if name in base else strip_tags(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in _APPENDED:
        return base + [v for v in override if v not in base]
    return strip_tags(override)


def compose(*paths: Path) -> tuple[dict[str, Any], Interpolation]:
    """The interpolated, merged model of the given compose files (first is the base)."""
    env = dotenv()
    model: Any = None
    interpolation = Interpolation(env, set(), set())
    for path in paths:
        document = interpolation.document(load_yaml(path))
        model = strip_tags(document) if model is None else merge(model, document)
    return model, interpolation


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (either compose form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str] | None:
        text = self.arguments.strip()
        if text.startswith("["):
            value: list[str] = json.loads(text)
            return value
        return None


def dockerfile(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            logical.append(line)
    instructions = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip()))
    return instructions


def from_images(instructions: list[Instruction]) -> Iterator[str]:
    """Image references of every FROM, with ARG defaults substituted; stage names skipped."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, default = instruction.arguments.partition("=")
            args[name.strip()] = default.strip()
        if instruction.keyword == "FROM":
            words = shlex.split(instruction.arguments)
            words = [w for w in words if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
            if image not in stages:
                yield image
