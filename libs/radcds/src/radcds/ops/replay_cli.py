"""``radcds-replay``: summarise a dead-letter topic and, with ``--apply``, replay its records (docs/operations.md,
"Replaying a dead-letter topic").

Connection settings come from ``RADCDS_REPLAY_*`` variables, the same fields every service has
(``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_CAFILE``,
``KAFKA_API_VERSION``); ``--bootstrap-servers`` overrides the first.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from pydantic_settings import SettingsConfigDict

from radcds.ops.kafka_log import KafkaDeadLetterLog
from radcds.ops.replay import Selection, dead_letter_topic_of, replay
from radcds.runtime.settings import ServiceSettings, load_settings


class ReplaySettings(ServiceSettings):
    """Kafka connection of the replay tool (env prefix ``RADCDS_REPLAY_``)."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_REPLAY_", extra="ignore", validate_default=True)


def _moment(text: str) -> datetime:
    """An ISO 8601 date-time with a zone (``Z`` or an offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return moment


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="radcds-replay",
        description="Summarise the dead letters of TOPIC (ids, types, error classes, counts; never contents) and,"
        " with --apply, produce each back to its original topic with its key and ce_* headers, committing the"
        " replay group's offset so that a rerun replays nothing twice.",
    )
    p.add_argument("topic", help="an event topic (its .dlt is read) or a dead-letter topic")
    p.add_argument("--bootstrap-servers", help="host:port,... (default RADCDS_REPLAY_KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument(
        "--group-id",
        help="the replay job's consumer group (default radcds-replay, or radcds-replay-<hash of the content filters>)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="apply", action="store_false", help="summarise only (the default)")
    mode.add_argument("--apply", dest="apply", action="store_true", help="replay and commit")
    p.set_defaults(apply=False)
    r = p.add_argument_group("range (after the replay group's committed offset)")
    r.add_argument("--partition", type=int, help="only this partition of the dead-letter topic")
    r.add_argument("--from-offset", type=int, help="first offset (inclusive)")
    r.add_argument("--to-offset", type=int, help="last offset (inclusive)")
    r.add_argument("--since", type=_moment, help="dead-lettered at or after, e.g. 2026-01-31T08:00:00Z")
    r.add_argument("--until", type=_moment, help="dead-lettered at or before")
    f = p.add_argument_group("content filters (repeat an option for several values)")
    f.add_argument("--ce-id", action="append", default=[], help="CloudEvents id")
    f.add_argument("--ce-type", action="append", default=[], help="CloudEvents type")
    f.add_argument("--error-class", action="append", default=[], help="radcds-dlt-error-class, e.g. InvalidEvent")
    f.add_argument("--error-contains", help="substring of radcds-dlt-error (matched, never printed)")
    f.add_argument("--consumer-group", action="append", default=[], help="the group that dead-lettered it")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one replay job; exit 0, 1 when a selected record names no original topic, 2 on bad arguments."""
    args = parser().parse_args(argv)
    try:
        selection = Selection(
            partition=args.partition,
            from_offset=args.from_offset,
            to_offset=args.to_offset,
            since=args.since,
            until=args.until,
            event_ids=frozenset(args.ce_id),
            event_types=frozenset(args.ce_type),
            error_classes=frozenset(args.error_class),
            error_contains=args.error_contains,
            consumer_groups=frozenset(args.consumer_group),
        )
    except ValueError as exc:
        print(f"radcds-replay: {exc}", file=sys.stderr)
        return 2
    settings = load_settings(ReplaySettings)
    topic = dead_letter_topic_of(args.topic)
    group = args.group_id or selection.default_group()
    log = KafkaDeadLetterLog.connect(
        args.bootstrap_servers or settings.kafka_bootstrap_servers,
        topic=topic,
        group=group,
        options=settings.kafka_client_options(),
    )
    try:
        if not log.partitions():
            print(f"radcds-replay: topic {topic} does not exist", file=sys.stderr)
            return 2
        summary = replay(log=log, dead_letter_topic=topic, group=group, selection=selection, apply=args.apply)
    finally:
        log.close()
    print(summary.render())
    return 0 if summary.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
