"""The Celery worker: a tiny app module and tasks that only deserialize, call, persist."""
