"""The problem details every error answers with (RFC 9457), as the OpenAPI document shows them."""

from __future__ import annotations

from typing import Any


def problem_schema() -> dict[str, Any]:
    """RFC 9457 problem details, for the OpenAPI document."""
    return {
        "content": {
            "application/problem+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "request_id": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "parameter": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                    "required": ["type", "title", "status"],
                }
            }
        }
    }
