"""The live path's figures for /metrics: clients, upstreams, events, drops, errors, lag."""

from __future__ import annotations

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from iot_pipeline.api.live.hub import HubStats, LiveHub


def metric_families(hub: LiveHub | None) -> list[Metric]:
    """The live path's figures for /metrics."""
    clients = GaugeMetricFamily("iot_api_stream_clients", "SSE clients of this API process")
    upstreams = GaugeMetricFamily(
        "iot_api_live_upstreams",
        "Sources feeding the live stream (Kafka consumer, Redis subscription), whatever the "
        "number of clients",
    )
    events = CounterMetricFamily(
        "iot_api_live_events",
        "Readings the live path received (skipped: let go unread while no client listened)",
        labels=["kind"],
    )
    dropped = CounterMetricFamily(
        "iot_api_stream_dropped_clients", "Clients disconnected for falling behind"
    )
    errors = CounterMetricFamily(
        "iot_api_live_errors", "Live-path upstream failures and documents not sent (logged)"
    )
    lag = GaugeMetricFamily(
        "iot_api_live_lag_seconds",
        "Seconds from the newest provisional record's Kafka time to the hub, last batch",
    )
    stats = hub.stats if hub is not None else HubStats()
    clients.add_metric([], len(hub.clients) if hub is not None else 0)
    upstreams.add_metric([], stats.upstreams)
    events.add_metric(["provisional"], stats.provisional)
    events.add_metric(["durable"], stats.durable)
    events.add_metric(["skipped"], stats.skipped)
    dropped.add_metric([], stats.dropped_clients)
    errors.add_metric([], stats.errors)
    lag.add_metric([], stats.last_provisional_lag)
    return [clients, upstreams, events, dropped, errors, lag]
