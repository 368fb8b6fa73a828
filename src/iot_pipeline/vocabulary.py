"""The pipeline's vocabulary: the names of metrics, quality flags, dead-letter reasons, window
resolutions and scopes, spelled once. The schema, the cleaning rules, the aggregation and the
API's models and parameters all import them from here.

Each closed set is a `Literal` type (so mypy and the OpenAPI document know every value) with
one constant per value, typed by it (so a misspelt constant does not type-check).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Metric = Literal["temperature", "humidity", "pm25", "pm10", "no2", "o3", "co"]
METRIC_NAMES: Final[tuple[Metric, ...]] = get_args(Metric)

# Quality flags of kept readings. INVALIDATING ones keep a reading out of the aggregates.
Flag = Literal[
    "unit_converted",
    "impossible_value",
    "future_timestamp",
    "too_late",
    "duplicate",
    "spike",
    "stuck",
    "rate_of_change",
    "cross_metric",
    "spatial",
    "inactive",
]
UNIT_CONVERTED: Final[Flag] = "unit_converted"
IMPOSSIBLE_VALUE: Final[Flag] = "impossible_value"
FUTURE_TIMESTAMP: Final[Flag] = "future_timestamp"
TOO_LATE: Final[Flag] = "too_late"
DUPLICATE: Final[Flag] = "duplicate"
SPIKE: Final[Flag] = "spike"
STUCK: Final[Flag] = "stuck"
RATE_OF_CHANGE: Final[Flag] = "rate_of_change"
CROSS_METRIC: Final[Flag] = "cross_metric"  # e.g. PM2.5 above PM10 at the same station and time
SPATIAL: Final[Flag] = "spatial"  # far from what the neighbouring stations report (buddy check)
# outside the active period an operator declared for its sensor (not in service then)
INACTIVE: Final[Flag] = "inactive"
INVALIDATING: Final[frozenset[Flag]] = frozenset(get_args(Flag)) - {UNIT_CONVERTED}
# The levels of quality control (docs/quality.md): level 1 checks validity (could any working
# instrument have sent this?), level 2 consistency in time and within a station, level 3
# consistency with the neighbouring stations.
LEVEL_1: Final[frozenset[Flag]] = frozenset(
    {IMPOSSIBLE_VALUE, FUTURE_TIMESTAMP, TOO_LATE, DUPLICATE, INACTIVE}
)
LEVEL_2: Final[frozenset[Flag]] = frozenset({SPIKE, STUCK, RATE_OF_CHANGE, CROSS_METRIC})
LEVEL_3: Final[frozenset[Flag]] = frozenset({SPATIAL})  # consistency with the neighbours

# One quality-control verdict per reading, after NOAA MADIS's data descriptors. G and B are
# MADIS's subjective lists: an operator's override, never a rule's (docs/quality.md).
Qc = Literal["S", "C", "Q", "X", "G", "B"]
QC_SCREENED: Final[Qc] = "S"  # passed levels 1 and 2, with a recent history to judge it by
QC_CHECKED: Final[Qc] = "C"  # passed level 1; level 2 had nothing to judge it by (yet)
QC_QUESTIONED: Final[Qc] = "Q"  # failed a level-2 or 3 check: suspect, out of the aggregates
QC_REJECTED: Final[Qc] = "X"  # failed a level-1 check: not a measurement
QC_ACCEPTED: Final[Qc] = "G"  # accepted by an operator over levels 2 and 3 (never over level 1)
QC_BLACKLISTED: Final[Qc] = "B"  # rejected by an operator, whatever the rules said
QC_VALUES: Final[tuple[Qc, ...]] = get_args(Qc)
# The verdicts that enter the aggregates (`valid`).
QC_VALID: Final[frozenset[Qc]] = frozenset({QC_SCREENED, QC_CHECKED, QC_ACCEPTED})

# An operator's override of the verdicts of one sensor over a time range.
OverrideAction = Literal["accept", "reject"]
ACCEPT: Final[OverrideAction] = "accept"
REJECT: Final[OverrideAction] = "reject"
# pending: stored, not yet applied to the stored readings (it applies at cleaning time
# already); applied: stored readings and windows follow it; removing: deleted, its readings
# being reverted; removed: reverted, kept for the record.
OverrideStatus = Literal["pending", "applied", "removing", "removed"]
OVERRIDE_PENDING: Final[OverrideStatus] = "pending"
OVERRIDE_APPLIED: Final[OverrideStatus] = "applied"
OVERRIDE_REMOVING: Final[OverrideStatus] = "removing"
OVERRIDE_REMOVED: Final[OverrideStatus] = "removed"
OVERRIDE_ACTIVE: Final[frozenset[OverrideStatus]] = frozenset({OVERRIDE_PENDING, OVERRIDE_APPLIED})

# Why a record went to the dead-letter topic (its `dlq.reason` header).
Reason = Literal[
    "malformed_json",
    "schema_invalid",
    "unit_mismatch",
    "time_out_of_range",
    "key_mismatch",
    "beyond_retention",
    "unprocessable",
    "range_failed",
]
MALFORMED_JSON: Final[Reason] = "malformed_json"
SCHEMA_INVALID: Final[Reason] = "schema_invalid"
UNIT_MISMATCH: Final[Reason] = "unit_mismatch"
TIME_OUT_OF_RANGE: Final[Reason] = "time_out_of_range"  # before 2000, or far in the future
KEY_MISMATCH: Final[Reason] = "key_mismatch"  # the Kafka key names another sensor
BEYOND_RETENTION: Final[Reason] = "beyond_retention"  # its day's raw readings are gone
UNPROCESSABLE: Final[Reason] = "unprocessable"  # a step raised: a bug or an unforeseen input
RANGE_FAILED: Final[Reason] = "range_failed"  # its range was quarantined

# Window aggregates: tumbling windows of these sizes, per sensor or per district.
Resolution = Literal["1m", "1h", "1d"]
RESOLUTIONS: Final[dict[str, int]] = {"1m": 60, "1h": 3600, "1d": 86400}  # seconds
Scope = Literal["sensor", "district"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
