"""Cleaning and validation of raw readings: pure functions over typed data."""

from iot_pipeline.cleaning.batch import (
    BatchResult,
    CleaningPolicy,
    CleanReading,
    DeadLetter,
    RawRecord,
    clean_batch,
    qc_verdict,
)
from iot_pipeline.cleaning.rules import Rejection
from iot_pipeline.cleaning.state import Hindsight, SensorState

__all__ = [
    "BatchResult",
    "CleanReading",
    "CleaningPolicy",
    "DeadLetter",
    "Hindsight",
    "RawRecord",
    "Rejection",
    "SensorState",
    "clean_batch",
    "qc_verdict",
]
