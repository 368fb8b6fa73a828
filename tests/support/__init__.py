"""Helpers the tests share: the stack's processes (workers, API, Airflow in a child), Kafka and
search I/O, isolation from a live pipeline, offline ground truth and the compose model.

Test modules import them as `from support.<module> import ...` (pytest puts `tests/` on the path
through its root `conftest.py`)."""
