"""Simulator of Casablanca's sensor network: realistic readings, labelled faults, to Kafka."""

from iot_pipeline.generator.faults import FAULT_KINDS, FaultRates
from iot_pipeline.generator.network import Network, build_network
from iot_pipeline.generator.stream import ReadingStream

__all__ = ["FAULT_KINDS", "FaultRates", "Network", "ReadingStream", "build_network"]
