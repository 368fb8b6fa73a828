"""ASGI entry point of the REST API (the application lives in `iot_pipeline.api`).

uvicorn --app-dir fastapi/app main:app --host 127.0.0.1 --port 8000 --no-access-log
(the app writes one access line per request itself; `make up` and the container run this).
"""

from iot_pipeline.api.app import create_app
from iot_pipeline.logs import configure
from iot_pipeline.settings import get_settings

configure("api", get_settings().log_format)
app = create_app()
