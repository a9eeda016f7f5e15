"""The operator CLI: ``python -m shared.cli --help``.

It reads and changes the same stores the functions use, on whichever backend
the environment selects (``BACKEND``; emulators through ``*_EMULATOR_HOST``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, Callable, Iterable, Sequence

from shared import log, names
from shared.backends import Backends, connect
from shared.ports import where
from shared.settings import VARIABLES, ConfigError, Settings, attribute_name


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def cmd_status(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each target's production model."""
    from shared.dataset_spec import load_spec

    rows = []
    for target in load_spec(s.dataset_spec).target_names:
        pointer = b.documents.get(names.PRODUCTION, target) or {}
        rows.append({"target": target, "version": pointer.get("version"),
                     "promoted_at": pointer.get("promoted_at"), "reason": pointer.get("reason"),
                     "mape": (pointer.get("metrics") or {}).get("mape")})
    return rows


def cmd_batches(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The most recently collected batches, newest first."""
    found = b.documents.query(where(names.BATCHES, order_by="collected_at", descending=True,
                                    limit=args.limit))
    return [{"batch_id": doc_id, **doc} for doc_id, doc in found]


def cmd_alerts(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Open alerts (or every alert with --all), newest first."""
    conditions = () if args.all else (("status", "==", "open"),)
    found = b.documents.query(where(names.ALERTS, *conditions, order_by="opened_at",
                                    descending=True, limit=args.limit))
    return [{"alert_id": doc_id, **doc} for doc_id, doc in found]


def cmd_dead_letters(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Dead letters on one topic, or on every topic."""
    topics = [args.topic] if args.topic else list(s.topics)
    return [asdict(d) for t in topics for d in b.events.dead_letters(t)]


def cmd_replay(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Publish a dead letter again on its topic."""
    new_id = b.events.replay_dead_letter(args.topic, args.id)
    return [{"replayed": args.id, "topic": args.topic, "new_message_id": new_id}]


def cmd_config(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The effective configuration."""
    return [{"variable": v.name, "value": getattr(s, attribute_name(v.name))} for v in VARIABLES]


COLUMNS = {
    "status": ["target", "version", "promoted_at", "mape", "reason"],
    "batches": ["batch_id", "source", "status", "start", "end", "rows", "quality_score",
                "fallback_used"],
    "alerts": ["alert_id", "metric", "target", "severity", "status", "value", "threshold",
               "opened_at"],
    "dead-letters": ["id", "topic", "subscription", "delivery_attempts", "last_error", "data"],
    "replay": ["replayed", "topic", "new_message_id"],
    "config": ["variable", "value"],
}
Command = Callable[[Backends, Settings, argparse.Namespace], list[dict[str, Any]]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli",
                                     description="Operate the forecasting system.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=fn.__doc__, description=fn.__doc__, **kw)
        p.set_defaults(fn=fn, columns=COLUMNS[name])
        return p

    add("status", cmd_status)
    add("batches", cmd_batches).add_argument("--limit", type=int, default=10)
    alerts = add("alerts", cmd_alerts)
    alerts.add_argument("--all", action="store_true", help="include resolved alerts")
    alerts.add_argument("--limit", type=int, default=50)
    add("dead-letters", cmd_dead_letters).add_argument("--topic", help="default: every topic")
    replay = add("replay", cmd_replay)
    replay.add_argument("id", help="dead-letter id, as `dead-letters` lists it")
    replay.add_argument("--topic", required=True)
    add("config", cmd_config)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log.configure(settings.project, settings.log_level, stream=sys.stderr)
    try:
        rows = args.fn(connect(settings), settings, args)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2, default=str) if args.json else _table(rows, args.columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
