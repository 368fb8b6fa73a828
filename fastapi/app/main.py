"""ASGI entry point of the REST API (the application lives in `iot_pipeline.api`).

uvicorn --app-dir fastapi/app main:app --host 127.0.0.1 --port 8000
"""

from iot_pipeline.api.app import create_app
from iot_pipeline.api.observability import configure_logging

configure_logging()
app = create_app()
