"""IoT sensor ETL pipeline: Casablanca's sensor readings from Kafka to search and an API."""

from iot_pipeline.settings import Settings, get_settings

__all__ = ["Settings", "__version__", "get_settings"]

__version__ = "0.1.0"
