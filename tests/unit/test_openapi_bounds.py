"""Every operation of the API states its worst case in the OpenAPI description: what it
reads and what bounds it (a page size, a cap, a cache, the registry), so an operator knows
what a request can cost before sending it."""

from __future__ import annotations

import re

from iot_pipeline.api.app import create_app
from iot_pipeline.settings import Settings

# Words that name a bound: a cap, a page size, a constant cost, a reuse window.
BOUND = re.compile(
    r"at most|no upstream|O\(1\)|O\(sensors\)|one ping|one redis round trip|per process|"
    r"grows with the number of sensors|limit",
    re.IGNORECASE,
)


def test_every_operation_states_its_worst_case() -> None:
    spec = create_app(Settings(app_env="local")).openapi()
    unbounded = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if not BOUND.search(operation.get("description") or "")
    ]
    assert unbounded == []
