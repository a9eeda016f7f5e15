"""The operator CLI: ``python -m shared.cli --help``.

It reads and changes the same stores the functions use, on whichever backend
the environment selects (``BACKEND``; emulators through ``*_EMULATOR_HOST``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from shared.platform import log, names
from shared.platform.backends import Backends, connect
from shared.platform.ports import where
from shared.platform.settings import VARIABLES, ConfigError, Settings, attribute_name


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table under a header of ``columns``."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
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
    """Each target's production model, with its served holdout MAPE."""
    from shared.core.dataset_spec import load_spec
    from shared.core.registry import Registry

    pointers = Registry(s, b).production_pointers()
    rows = []
    for target in load_spec(s.dataset_spec).target_names:
        pointer = pointers.get(target) or {}
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
    if args.all:
        query = where(names.ALERTS, order_by="opened_at", descending=True, limit=args.limit)
    else:
        query = where(names.ALERTS, ("status", "==", "open"), order_by="opened_at", descending=True,
                      limit=args.limit)
    found = b.documents.query(query)
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
    return [{"variable": v.name, "value": ("<set>" if getattr(s, attribute_name(v.name)) else "")
             if v.secret else v.format(getattr(s, attribute_name(v.name)))} for v in VARIABLES]


def cmd_models(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """A target's model versions, newest first, with status and served holdout MAPE."""
    from shared.core.registry import Registry

    # "served": the mix predict serves, which the gates judge (the pointer shows the same).
    return [{**v, "mape": ((v.get("metrics") or {}).get("served") or {}).get("mape"),
             "naive_mape": (v.get("seasonal_naive") or {}).get("mape")}
            for v in Registry(s, b).versions(args.target, args.limit)]


def cmd_history(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """A target's promotions and rollbacks, newest first."""
    from shared.core.registry import Registry

    return Registry(s, b).history(args.target, args.limit)


def cmd_rollback(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Serve an earlier version of a target again, record why, announce it."""
    from shared.core.registry import Registry

    registry = Registry(s, b)
    outcome = registry.rollback(args.target, args.version, args.reason, actor=args.actor)
    if not outcome.won:
        raise ValueError(outcome.reason)
    message_id = registry.announce([outcome], cause="rollback")
    pointer = registry.production(args.target) or {}
    return [{"target": args.target, "version": args.version, "previous": pointer.get("previous_version"),
             "model_updated_message_id": message_id}]


COLUMNS = {
    "status": ["target", "version", "promoted_at", "mape", "reason"],
    "batches": ["batch_id", "source", "status", "start", "end", "rows", "quality_score",
                "fallback_used"],
    "alerts": ["alert_id", "metric", "target", "severity", "status", "value", "threshold",
               "opened_at"],
    "dead-letters": ["id", "topic", "subscription", "delivery_attempts", "last_error", "data"],
    "replay": ["replayed", "topic", "new_message_id"],
    "config": ["variable", "value"],
    "models": ["version", "status", "created_at", "mape", "naive_mape", "dataset_version", "reasons"],
    "history": ["at", "action", "from_version", "to_version", "actor", "reason"],
    "rollback": ["target", "version", "previous", "model_updated_message_id"],
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
    models = add("models", cmd_models)
    models.add_argument("target")
    models.add_argument("--limit", type=int, default=20)
    history = add("history", cmd_history)
    history.add_argument("target")
    history.add_argument("--limit", type=int, default=20)
    rollback = add("rollback", cmd_rollback)
    rollback.add_argument("target")
    rollback.add_argument("version", help="an archived version of the target (see `models`)")
    rollback.add_argument("--reason", required=True, help="recorded in the promotion history")
    rollback.add_argument("--actor", default=os.environ.get("USER", "operator"))
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
    print(json.dumps(rows, indent=2, default=str) if args.json else format_table(rows, args.columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
