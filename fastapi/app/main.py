"""ASGI entry point of the REST API (the application lives in `iot_pipeline.api`).

uvicorn --app-dir fastapi/app main:app --host 127.0.0.1 --port 8000 --no-access-log
serves it with uvicorn's defaults; `make up` and the container run
`python -m iot_pipeline.api.serve`, the same app behind an edge that holds (bounded request
heads, a deadline for each, keep-alive timeouts: see iot_pipeline.api.serve).
"""

from iot_pipeline.api.app import create_app
from iot_pipeline.logs import configure
from iot_pipeline.settings import get_settings

configure("api", get_settings().log_format)
app = create_app()
