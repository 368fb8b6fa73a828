"""Casablanca sensor network simulator: produces readings to Kafka (see --help)."""

import sys

from iot_pipeline.generator.cli import main

if __name__ == "__main__":
    sys.exit(main())
