"""Index templates (JSON in `elasticsearch/`), shared by both engines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_templates(folder: Path, prefix: str) -> dict[str, dict[str, Any]]:
    """Every `*.template.json` of the folder, named `<prefix>-<name>`, `{prefix}` filled in."""
    files = sorted(folder.glob("*.template.json"))
    if not files:
        raise FileNotFoundError(
            f"no index templates in {folder}; run from the project root or set SEARCH_TEMPLATES_DIR"
        )
    templates: dict[str, dict[str, Any]] = {}
    for path in files:
        body = json.loads(path.read_text(encoding="utf-8").replace("{prefix}", prefix))
        body.pop("$comment", None)
        templates[f"{prefix}-{path.name.removesuffix('.template.json')}"] = body
    return templates


def missing_fields(wanted: dict[str, Any], present: dict[str, Any]) -> dict[str, Any]:
    """The field mappings of `wanted` (a `properties` object) that `present` lacks, objects
    followed into their own properties. A field an index already has keeps the mapping it was
    created with: the engine refuses a change of `index` or `doc_values` on an existing field,
    so a template that makes a field cheaper reaches the indices created after it, and an
    upgrade only ever adds fields to the older ones."""
    missing: dict[str, Any] = {}
    for name, field in wanted.items():
        have = present.get(name)
        if have is None:
            missing[name] = field
        elif "properties" in field:
            inner = missing_fields(field["properties"], have.get("properties", {}))
            if inner:
                missing[name] = {"properties": inner}
    return missing


def additions(
    wanted: dict[str, Any], indices: dict[str, Any]
) -> list[tuple[list[str], dict[str, Any]]]:
    """What each existing index lacks of the template's mappings (`wanted`), given the
    engine's answer to GET <pattern>/_mapping: (the indices lacking the same fields, those
    fields), for one put-mapping call per group."""
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for index, body in sorted(indices.items()):
        present = body.get("mappings", {}).get("properties", {})
        missing = missing_fields(wanted.get("properties", {}), present)
        if missing:
            key = json.dumps(missing, sort_keys=True)
            groups.setdefault(key, ([], missing))[0].append(index)
    return list(groups.values())


def apply_templates(
    templates: dict[str, dict[str, Any]],
    put_template: Callable[[str, dict[str, Any]], object],
    get_mappings: Callable[[str], Any],
    put_fields: Callable[[str, dict[str, Any]], object],
) -> None:
    """Create or update each template, then add the fields it gained to the indices its
    patterns already match, through one engine client's three calls: put a template (name,
    body), get the mappings of a pattern (missing indices ignored), put fields on indices."""
    for name, body in templates.items():
        put_template(name, body)
        mappings = body.get("template", {}).get("mappings")
        if not mappings:
            continue
        existing = dict(get_mappings(",".join(body["index_patterns"])))
        for indices, fields in additions(mappings, existing):
            put_fields(",".join(indices), fields)
