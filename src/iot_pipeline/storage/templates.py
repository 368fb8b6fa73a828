"""Index templates (JSON in `elasticsearch/`), shared by both engines."""

from __future__ import annotations

import json
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
