"""What one process writes and another reads: offset ranges and range tasks, the stored
reading, the live channel, the run state in Redis, partition positions, task names and the
task client, the override and sensor-metadata documents, and the health probes.

This floor imports only the pure core (cleaning, schema, vocabulary), storage, settings and
names, never a process's own room: the API, the orchestrator and the worker all stand on it.
"""
