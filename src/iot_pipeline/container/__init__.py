"""What the container deployment adds around the entry points: secrets and health checks."""
