"""The buddy check's rule on its own: neighbours, robust spread, tolerance, no buddies."""

from __future__ import annotations

from iot_pipeline.cleaning.buddy_rule import (
    BUDDY_RADIUS_KM,
    BUDDY_TOLERANCE,
    MIN_BUDDIES,
    SlotValue,
    distance_km,
    spatial_outliers,
)


def _site(n: int, value: float, lat: float = 33.58, lon: float = -7.62) -> SlotValue:
    return SlotValue(f"s{n}-temperature", f"s{n}", lat + 0.005 * n, lon, value)


def test_distance_is_the_great_circle() -> None:
    casablanca, rabat = _site(0, 0, 33.5731, -7.5898), _site(0, 0, 34.0209, -6.8416)
    assert 85 < distance_km(casablanca, rabat) < 90  # about 87 km


def test_a_value_far_from_its_neighbours_is_questioned_and_they_are_not() -> None:
    values = [20.1, 19.8, 20.4, 20.0, 20.2, 31.0]
    sites = {s.sensor_id: s for s in (_site(n, v) for n, v in enumerate(values))}
    questioned, judged = spatial_outliers("temperature", sites)
    assert questioned == {"s5-temperature"}
    assert judged == set(sites)


def test_within_the_metrics_tolerance_nothing_is_questioned() -> None:
    # neighbours agree to 0.1 degC, so the spread alone would question 23.9; the tolerance
    # (what neighbouring stations genuinely differ by) does not
    base = 20.0
    values = [base, base + 0.1, base, base + 0.1, base + BUDDY_TOLERANCE["temperature"] - 1.1]
    sites = {s.sensor_id: s for s in (_site(n, v) for n, v in enumerate(values))}
    assert spatial_outliers("temperature", sites)[0] == set()


def test_without_enough_buddies_there_is_no_verdict() -> None:
    near = [_site(n, 20.0) for n in range(MIN_BUDDIES)]  # each has MIN_BUDDIES - 1 buddies
    far = _site(9, 45.0, lat=33.58 + BUDDY_RADIUS_KM / 50)  # about 22 km north: alone
    sites = {s.sensor_id: s for s in [*near, far]}
    assert spatial_outliers("temperature", sites) == (set(), set())


def test_one_spike_in_a_slot_does_not_question_the_sensor() -> None:
    # its mean is pulled far off by one reading, but its other readings agree with the
    # neighbours: the spike is the temporal rules' part
    spiked = SlotValue("s5-temperature", "s5", 33.6, -7.62, 27.0, low=19.9, high=90.0)
    sites = {s.sensor_id: s for s in [*(_site(n, 20.0 + 0.1 * n) for n in range(5)), spiked]}
    assert spatial_outliers("temperature", sites)[0] == set()
    off = SlotValue("s5-temperature", "s5", 33.6, -7.62, 32.0, low=31.0, high=33.0)
    assert spatial_outliers("temperature", {**sites, off.sensor_id: off})[0] == {off.sensor_id}
