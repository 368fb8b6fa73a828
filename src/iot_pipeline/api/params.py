"""Query parameters several routers share, stated once: the same name, bounds, description
and default give the same OpenAPI parameter wherever a route takes them.

Each alias carries the parameter's validation and documentation; the route gives its default
(`= None` for the optional filters, `= 100` for a page size).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from iot_pipeline.api.edge import Moment
from iot_pipeline.vocabulary import Metric

# filters
SensorIds = Annotated[
    list[str] | None, Query(max_length=100, description="Sensor ids (repeatable).")
]
Districts = Annotated[list[str] | None, Query(max_length=50, description="Districts (repeatable).")]
Metrics = Annotated[list[Metric] | None, Query(description="Metrics (repeatable).")]

# the time range [start, end)
Start = Annotated[
    Moment | None,
    Query(description="From this event time (ISO 8601, inclusive; UTC without an offset)."),
]
End = Annotated[
    Moment | None,
    Query(description="Until this event time (ISO 8601, exclusive; UTC without an offset)."),
]

# pagination
Limit = Annotated[int, Query(ge=1, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]
