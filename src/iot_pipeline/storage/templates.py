"""Index templates (JSON in `elasticsearch/`) and index naming, shared by both engines."""

from __future__ import annotations

import json
from datetime import datetime
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


def readings_index(prefix: str, event_time: datetime) -> str:
    """The daily index of raw readings for an event time (UTC)."""
    return f"{prefix}-readings-{event_time:%Y.%m.%d}"
