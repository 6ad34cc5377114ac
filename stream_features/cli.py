"""``stream-features``: consume, serve, features, produce, backfill, generate. Bad input: a one-line error."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import ServiceConfig, config_from_env, read_redis_client
from .core.timeparse import parse_timestamp
from .errors import StreamFeaturesError
from .logs import configure_logging
from .redaction import redact


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def _timestamp(text: str) -> float:
    """ISO 8601 or Unix seconds, as a flag value."""
    try:
        value: object = float(text)
    except ValueError:
        value = text
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_connection_flags(parser: argparse.ArgumentParser, *, kafka: bool = True, reads: bool = False) -> None:
    if kafka:
        parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
        parser.add_argument("--topic", help="events topic (env STREAM_FEATURES_TOPIC, default customer-events)")
        parser.add_argument(
            "--kafka-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="extra librdkafka setting, e.g. security.protocol=SASL_SSL (repeatable)",
        )
    parser.add_argument("--redis-url", help="Redis URL, auth and TLS included (env REDIS_URL)")
    if reads:
        parser.add_argument(
            "--redis-read-url",
            help="where lookups read, e.g. a replica, or redis+sentinel://…/SERVICE?role=replica (env REDIS_READ_URL)",
        )
    parser.add_argument("--key-prefix", help="Redis key prefix (env STREAM_FEATURES_KEY_PREFIX, default sf)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


class _Version(argparse.Action):
    """``--version``: the package and the Rust core's build (read only when asked for)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from .version import version_line

        print(version_line())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stream-features", description=__doc__)
    parser.add_argument("--version", action=_Version, nargs=0, help="package version and the Rust core's build")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    consume = sub.add_parser("consume", help="run the Kafka → Redis consumer")
    _add_connection_flags(consume)
    consume.add_argument("--group", help="consumer group (env STREAM_FEATURES_GROUP)")
    consume.add_argument(
        "--client-id",
        help="Kafka client.id, shown as the owner of its partitions; {host} and {pid} are filled in "
        "(env STREAM_FEATURES_CLIENT_ID, default stream-features@{host}/{pid})",
    )
    consume.add_argument(
        "--batch-size",
        type=_positive_int,
        help="most records per batch (default 150000; backlogs fill it, live traffic does not)",
    )
    consume.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off (default 9464)")
    consume.add_argument("--metrics-host", default="127.0.0.1")
    consume.add_argument("--exit-when-idle", type=float, metavar="SECONDS", help="stop after this long with no records")

    serve = sub.add_parser("serve", help="run the HTTP API and the status page")
    _add_connection_flags(serve, reads=True)
    serve.add_argument("--group", help="consumer group whose lag the status page shows")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-status", action="store_true", help="no status page (no Kafka reads)")
    serve.add_argument(
        "--workers", type=_positive_int, default=1, help="server processes on the port (default 1; see README)"
    )
    serve.add_argument(
        "--token-file",
        help="bearer tokens, one per line: every route but /healthz asks for one (env STREAM_FEATURES_API_TOKENS_FILE)",
    )
    serve.add_argument(
        "--protect-metrics", action="store_true", default=None, help="with --token-file: /metrics asks for a token too"
    )

    features = sub.add_parser("features", help="print one customer's features")
    _add_connection_flags(features, kafka=False, reads=True)
    features.add_argument("customer_id")
    features.add_argument("--days", type=_positive_int, default=30)
    features.add_argument("--as-of", type=_timestamp, help="ISO 8601 time or Unix seconds (default now)")
    features.add_argument("--summary", action="store_true", help="nested summary with metadata")
    features.add_argument("--json", action="store_true", help="JSON output for scripts")

    at = sub.add_parser("features-at", help="features of (customer_id, as_of) rows, each as of its own time")
    _add_connection_flags(at, kafka=False, reads=True)
    at.add_argument("rows", help="CSV (header: customer_id,as_of) or JSONL file of rows, or - for standard input")
    at.add_argument("--days", type=_positive_int, default=30)
    at.add_argument("--output", "-o", default="-", help="JSONL output file, or - for standard output")
    at.add_argument("--no-progress", action="store_true")

    produce = sub.add_parser("produce", help="send JSONL events (FILE or -) to the topic")
    _add_connection_flags(produce)
    produce.add_argument("file", help="JSONL file, or - for standard input")
    produce.add_argument("--no-progress", action="store_true")

    status = sub.add_parser(
        "status", help="the status page's summary in the terminal (lag, owners, dead letters, Redis)"
    )
    _add_connection_flags(status, reads=True)
    status.add_argument("--group", help="consumer group (env STREAM_FEATURES_GROUP)")
    status.add_argument("--json", action="store_true", help="JSON output for scripts")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between the two samples (throughput)")

    repair = sub.add_parser(
        "repair", help="rebuild one customer from what Kafka still holds (e.g. after its state became unreadable)"
    )
    _add_connection_flags(repair)
    repair.add_argument("customer_id")
    repair.add_argument("--no-progress", action="store_true")

    backfill = sub.add_parser(
        "backfill", help="load history from files (JSON Lines, CSV, Parquet), then hand over to the stream"
    )
    _add_connection_flags(backfill)
    from .history.command import add_arguments as add_backfill_arguments

    add_backfill_arguments(backfill, _timestamp, _positive_int)
    _add_redrive_parser(sub)

    generate = sub.add_parser("generate", help="write realistic synthetic events as JSONL")
    generate.add_argument("--customers", type=_positive_int, default=1000)
    generate.add_argument("--events", type=_positive_int, default=20000)
    generate.add_argument("--days", type=_positive_int, default=120, help="history length ending at --end")
    generate.add_argument("--end", type=_timestamp, help="last event time (default now)")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--invalid-rate", type=_rate, default=0.01)
    generate.add_argument("--duplicate-rate", type=_rate, default=0.01)
    generate.add_argument("--output", "-o", default="-", help="file, or - for standard output")
    return parser


def _add_redrive_parser(sub: Any) -> None:
    redrive = sub.add_parser(
        "redrive",
        help="send dead letters that today's rules accept back to the topic, once; the rest to a JSONL file",
    )
    _add_connection_flags(redrive)
    redrive.add_argument(
        "--reason", action="append", default=[], help="only dead letters with this reason (repeatable)"
    )
    redrive.add_argument("--source-partition", type=int, help="only records that came from this partition")
    redrive.add_argument("--from-offset", type=int, help="only records from this source offset on (inclusive)")
    redrive.add_argument("--to-offset", type=int, help="only records up to this source offset (inclusive)")
    redrive.add_argument("--since", type=_timestamp, help="only records dead-lettered at or after this time")
    redrive.add_argument("--until", type=_timestamp, help="only records dead-lettered at or before this time")
    redrive.add_argument("--dry-run", action="store_true", help="send nothing: count by reason what would happen")
    redrive.add_argument(
        "--failed-output",
        default="redrive-still-failing.jsonl",
        help="JSONL file for the records that still fail, with their reason now (default %(default)s)",
    )
    redrive.add_argument("--json", action="store_true", help="the report as JSON")
    redrive.add_argument("--no-progress", action="store_true")


def _config(args: argparse.Namespace) -> ServiceConfig:
    config = config_from_env()
    options = dict(config.kafka_options)
    for item in getattr(args, "kafka_option", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StreamFeaturesError(f"--kafka-option expects KEY=VALUE, got {item!r}")
        options[key] = value
    return config.with_overrides(
        kafka_bootstrap_servers=getattr(args, "bootstrap_servers", None),
        topic=getattr(args, "topic", None),
        group_id=getattr(args, "group", None),
        client_id=_client_id(getattr(args, "client_id", None)),
        redis_url=getattr(args, "redis_url", None),
        redis_read_url=getattr(args, "redis_read_url", None),
        key_prefix=getattr(args, "key_prefix", None),
        batch_size=getattr(args, "batch_size", None),
        metrics_port=getattr(args, "metrics_port", None),
        api_tokens_file=getattr(args, "token_file", None),
        protect_metrics=getattr(args, "protect_metrics", None),
        kafka_options=options,
    )


def _client_id(template: str | None) -> str | None:
    from .config import client_id_from

    return None if template is None else client_id_from(template)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "log_level", "warning"))
    try:
        return int(_COMMANDS[args.command](args))
    except StreamFeaturesError as exc:
        print(f"stream-features: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug or an unexpected library error: the traceback, secrets masked
        import traceback

        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return 1


def _cmd_consume(args: argparse.Namespace) -> int:
    from .ingest import health
    from .ingest.consumer import FeatureConsumer, describe_state
    from .ingest.offsets_watch import OffsetWatch

    config = _config(args)
    consumer = FeatureConsumer(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: consumer.stop_event.set())
    watch = None
    if config.metrics_port:  # /metrics, /healthz, /readyz (health.py)
        health.serve(consumer.progress, consumer.metrics.registry, host=args.metrics_host, port=config.metrics_port)
        if config.offsets_watch_seconds > 0:  # the stuck-consumer alert's offsets, apart from the poll loop
            watch = OffsetWatch(config, consumer.metrics.registry, interval_seconds=config.offsets_watch_seconds)
    consumer.start()
    if watch is not None:
        watch.start()
    stats = consumer.run(exit_when_idle_seconds=args.exit_when_idle)
    if watch is not None:
        watch.stop()
    print(json.dumps(describe_state(stats)), file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .ingest.kafka_io import wait_for_kafka
    from .query.status import StatusSampler, render_status

    config = _config(args)
    wait_for_kafka(config, attempts=3)
    sampler = StatusSampler(config)
    try:
        sampler.collect()
        time.sleep(max(0.0, args.interval))
        sampler.collect()
    finally:
        sampler.close()
    snapshot = sampler.snapshot()
    if snapshot["committed"] is None:
        raise StreamFeaturesError(snapshot["error"] or "Kafka not readable")
    if args.json:
        print(json.dumps(snapshot, indent=2))
    else:
        render_status(snapshot)
    return 0


def _cmd_features_at(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .query.point_in_time import answer_rows, read_rows
    from .query.reader import FeatureReader

    config = _config(args)
    reader = FeatureReader(read_redis_client(config, socket_timeout=10), config.engine, prefix=config.key_prefix)
    jsonl = args.rows.endswith((".jsonl", ".json", ".ndjson"))
    columns = (TextColumn("rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with contextlib.ExitStack() as files:
        source = sys.stdin if args.rows == "-" else files.enter_context(Path(args.rows).open(encoding="utf-8"))
        out = sys.stdout.buffer if args.output == "-" else files.enter_context(Path(args.output).open("wb"))
        with Progress(*columns, disable=args.no_progress or args.output == "-") as progress:
            task = progress.add_task("rows", total=None)
            count = answer_rows(
                reader,
                read_rows(source, jsonl=jsonl),
                out,
                days=args.days,
                progress=lambda done: progress.update(task, completed=done),
            )
    print(f"{count} rows", file=sys.stderr)
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from .ingest.repair import repair_customer

    report = repair_customer(_config(args), args.customer_id, show_progress=not args.no_progress)
    print(json.dumps(report.__dict__))
    return 0


def _cmd_redrive(args: argparse.Namespace) -> int:
    from .redrive_cli import run_redrive

    return run_redrive(_config(args), args)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .query.api import create_app
    from .query.api_auth import read_tokens
    from .query.status import StatusSampler

    config = _config(args)
    if config.api_tokens_file:
        read_tokens(config.api_tokens_file)  # a bad file is one line here, not an error per worker
    # SIGTERM/SIGINT: uvicorn stops accepting, lets requests in progress finish (up to 10 s), exits.
    # log_config=None: uvicorn's lines go through our JSON logs (secrets masked) like the rest.
    common = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": False,
        "log_config": None,
    }
    if args.workers == 1:
        app = create_app(config, status=None if args.no_status else StatusSampler(config))
        uvicorn.run(app, timeout_graceful_shutdown=10, **common)
        return 0
    # Several processes on one port: each builds the app from the environment, flags included.
    os.environ.update(config.to_env())
    os.environ["STREAM_FEATURES_STATUS"] = "0" if args.no_status else "1"
    os.environ["STREAM_FEATURES_LOG_LEVEL"] = args.log_level
    uvicorn.run(
        "stream_features.query.api:create_app_from_env",
        factory=True,
        workers=args.workers,
        timeout_graceful_shutdown=10,
        **common,
    )
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from .query.reader import FeatureReader

    config = _config(args)
    client = read_redis_client(config, socket_timeout=5, socket_connect_timeout=3)
    reader = FeatureReader(client, config.engine, prefix=config.key_prefix)
    try:
        if args.summary:
            result = reader.get_summary(args.customer_id, days=args.days, as_of=args.as_of)
        else:
            result = reader.get_features(args.customer_id, days=args.days, as_of=args.as_of)
    except OSError as exc:
        raise StreamFeaturesError(f"Redis at {_read_url_shown(config)} is not reachable: {exc}") from None
    except Exception as exc:
        import redis

        if isinstance(exc, redis.RedisError):
            raise StreamFeaturesError(f"Redis at {_read_url_shown(config)} is not reachable: {exc}") from None
        raise
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _read_url_shown(config: ServiceConfig) -> str:
    shown = config.describe()
    return str(shown["redis_read_url"] or shown["redis_url"])


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    # Ids, devices and attributes are event data: shown as plain text (no markup, no control codes).
    title = f"customer {result['customer_id']}  ·  {result['window_days']} days as of {result['as_of']}"
    table = Table(title=_plain(title))
    table.add_column("feature")
    table.add_column("value", justify="right")

    def add(prefix: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name in ("customer_id", "as_of", "window_days"):
                continue
            if isinstance(value, dict) and name != "device_usage" and name != "metadata":
                add(f"{name}.", value)
                continue
            table.add_row(_plain(prefix + name), _plain(_readable(value)))

    add("", result)
    Console().print(table)


def _plain(text: str) -> Any:
    from rich.control import strip_control_codes
    from rich.text import Text

    return Text("".join(ch for ch in strip_control_codes(text) if ch.isprintable() or ch == " "))


def _readable(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return "–" if value is None else str(value)


def _cmd_produce(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from .ingest.kafka_io import wait_for_kafka
    from .ingest.producer import produce_lines

    config = _config(args)
    if args.file != "-" and not Path(args.file).is_file():
        raise StreamFeaturesError(f"no such file: {args.file}")
    wait_for_kafka(config, attempts=3)  # wrong credentials: one line and exit 2, not a hang
    try:
        if args.file == "-":
            sent = produce_lines(sys.stdin.buffer, config, show_progress=not args.no_progress)
        else:
            with Path(args.file).open("rb") as handle:
                total = sum(1 for _ in handle)
            with Path(args.file).open("rb") as handle:
                sent = produce_lines(handle, config, total=total, show_progress=not args.no_progress)
    except KafkaException as exc:
        raise StreamFeaturesError(str(exc)) from None
    print(f"produced {sent} records to {config.topic}", file=sys.stderr)
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from .history.command import run

    return run(args, _config(args))


def _cmd_generate(args: argparse.Namespace) -> int:
    from .generate import GeneratorOptions, generate_events

    end = args.end if args.end is not None else time.time()
    options = GeneratorOptions(
        customers=args.customers,
        events=args.events,
        start=end - args.days * 86400,
        end=end,
        seed=args.seed,
        invalid_rate=args.invalid_rate,
        duplicate_rate=args.duplicate_rate,
    )
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        for line in generate_events(options):
            out.write(line + b"\n")
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return 0


_COMMANDS = {
    "consume": _cmd_consume,
    "serve": _cmd_serve,
    "features": _cmd_features,
    "produce": _cmd_produce,
    "generate": _cmd_generate,
    "repair": _cmd_repair,
    "features-at": _cmd_features_at,
    "status": _cmd_status,
    "backfill": _cmd_backfill,
    "redrive": _cmd_redrive,
}
