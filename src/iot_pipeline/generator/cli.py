"""Command line of the sensor network simulator (`data_generator/producer.py`)."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from iot_pipeline.generator.faults import FaultRates
from iot_pipeline.generator.runner import Generator, GeneratorError, RunConfig
from iot_pipeline.logs import configure as configure_logging
from iot_pipeline.settings import Settings

EXAMPLES = """\
examples:
  producer.py live                                  # DATA_GENERATOR_INTERVAL_SECONDS pacing
  producer.py live --rate 500 --duration 60         # ~500 readings/s for a minute
  producer.py live --count 10000 --seed 7 --labels labels.jsonl
  producer.py backfill --start 2026-11-01 --end 2026-11-02 --interval 60
  producer.py backfill --start 2026-11-01T00:00Z --count 1000000 --faults none
"""


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer.py",
        description="Simulate Casablanca's sensor network and produce its readings to Kafka.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", choices=["live", "backfill"], help="real time, or a past range")
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument(
        "--interval",
        type=_positive(float),
        help="seconds between rounds (one reading per sensor); "
        "default DATA_GENERATOR_INTERVAL_SECONDS",
    )
    pacing.add_argument(
        "--rate", type=_positive(float), help="live: readings per second (sets the interval)"
    )
    parser.add_argument("--count", type=_positive(int), help="stop after this many readings")
    parser.add_argument(
        "--duration", type=_positive(float), help="live: seconds to run; backfill: span of time"
    )
    parser.add_argument("--start", type=_timestamp, help="backfill: first event time (UTC)")
    parser.add_argument("--end", type=_timestamp, help="backfill: event times end before this")
    parser.add_argument("--seed", type=int, help="make the stream reproducible")
    parser.add_argument("--topic", help="default KAFKA_SENSOR_DATA_TOPIC")
    parser.add_argument(
        "--stations-per-district",
        type=_positive(int),
        help="default DATA_GENERATOR_STATIONS_PER_DISTRICT (7 sensors per station)",
    )
    parser.add_argument(
        "--coarse",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="share of sensors reporting coarsely: whole units, or whole degF written in degC "
        "(default 0)",
    )
    parser.add_argument(
        "--faults", choices=["default", "none"], default="default", help="base fault rates"
    )
    parser.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="override one fault rate (repeatable), e.g. spike=0.01",
    )
    parser.add_argument("--labels", type=Path, help="write fault labels here (JSON lines)")
    parser.add_argument(
        "--progress-every", type=float, default=5.0, help="seconds between progress lines; 0=off"
    )
    parser.add_argument(
        "--compression", choices=["none", "lz4", "zstd", "snappy", "gzip"], default="lz4"
    )
    return parser


def config_from_args(args: argparse.Namespace, settings: Settings) -> RunConfig:
    """Check the combination of options and build the run's configuration."""
    stations = args.stations_per_district or settings.data_generator_stations_per_district
    sensors = 14 * stations * 7
    interval = args.interval or settings.data_generator_interval_seconds
    if args.rate:
        if args.mode != "live":
            raise GeneratorError("--rate paces live mode; backfill runs as fast as it can")
        interval = sensors / args.rate
    start, end = args.start, args.end
    if args.mode == "backfill":
        if start is None:
            raise GeneratorError("backfill needs --start (and one of --end, --duration, --count)")
        if args.duration:
            end = start + timedelta(seconds=args.duration)
        if end is None and args.count is None:
            raise GeneratorError("backfill needs --end, --duration or --count to know when to stop")
        if end is not None and end <= start:
            raise GeneratorError(
                f"--end {end.isoformat()} is not after --start {start.isoformat()}"
            )
    elif start is not None or end is not None:
        raise GeneratorError("--start/--end are for backfill; live mode uses the current time")
    base = FaultRates.none() if args.faults == "none" else FaultRates()
    try:
        rates = FaultRates.parse(args.fault_rate, base)
    except (ValueError, ValidationError) as exc:
        raise GeneratorError(str(exc)) from None
    return RunConfig(
        mode=args.mode,
        topic=args.topic or settings.kafka_sensor_data_topic,
        seed=args.seed if args.seed is not None else secrets.randbits(32),
        interval=interval,
        count=args.count,
        duration=args.duration if args.mode == "live" else None,
        start=start,
        end=end,
        stations_per_district=stations,
        coarse_fraction=args.coarse,
        rates=rates,
        labels_path=args.labels,
        progress_every=args.progress_every,
        compression=args.compression,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; exit 0 when everything sent was acknowledged."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging("generator", settings.log_format)
        config = config_from_args(args, settings)
        stats = Generator(settings, config).run()
    except ValidationError as exc:
        print(f"producer.py: invalid configuration (environment or .env):\n{exc}", file=sys.stderr)
        return 2
    except GeneratorError as exc:
        print(f"producer.py: error: {exc}", file=sys.stderr)
        return 2
    print(stats.summary(config), flush=True)
    if stats.failed or stats.unflushed:
        print(
            f"producer.py: {stats.failed} failed and {stats.unflushed} unconfirmed deliveries; "
            f"first error: {stats.first_error or '-'}",
            file=sys.stderr,
        )
        return 1
    return 0
