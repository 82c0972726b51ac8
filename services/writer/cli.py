"""`contract-sync writer`: run the writer (Kafka -> PostgreSQL)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from services.common.settings import settings_from_args
    from services.writer.service import main
    from services.writer.settings import WriterSettings

    main(settings_from_args(WriterSettings, args, ("batch_max_records", "batch_max_ms", "group_id")))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "writer",
        help="apply contract records, catalog, sync settings and local edits to PostgreSQL",
        description="Run the writer until SIGTERM/SIGINT. Settings: WRITER_* env vars, KAFKA_BOOTSTRAP_SERVERS, "
        "DATABASE_URL (see docs/writer.md).",
    )
    parser.add_argument(
        "--batch-max-records", type=int, default=None, help="records per batch (WRITER_BATCH_MAX_RECORDS)"
    )
    parser.add_argument(
        "--batch-max-ms", type=int, default=None, help="batch wait in ms (WRITER_BATCH_MAX_MS)"
    )
    parser.add_argument("--group-id", default=None, help="consumer group (WRITER_GROUP_ID)")
    parser.set_defaults(func=_run)
