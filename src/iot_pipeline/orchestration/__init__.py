"""Orchestration: batches of offset ranges, planned, dispatched and committed (the DAGs' logic)."""
