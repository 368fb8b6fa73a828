"""The REST API (FastAPI): routers per resource over the async storage interface."""
