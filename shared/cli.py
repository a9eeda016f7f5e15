"""The operator CLI: ``python -m shared.cli --help``.

It reads and changes the same stores the functions use, on whichever backend
the environment selects (``BACKEND``; emulators through ``*_EMULATOR_HOST``).
On the embedded backend that is ``STATE_DIR``, by default the local stack's
``.state/local``. It names the store it reads on stderr (stdout carries only
the table or ``--json``), and refuses a missing embedded store instead of
creating an empty one. Notes (an empty result; when a calendar change takes
effect) go to stderr too.

Exit codes: 0 success, including an empty result (stdout ``(none)`` or ``[]``,
a note on stderr); 1 the command failed (an unknown id, a refused rollback);
2 a configuration error, or no embedded store at ``STATE_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from shared.platform import log, names
from shared.platform.backends import Backends, connect
from shared.platform.claims import DONE, FAILED, RELEASED, RUNNING
from shared.platform.ports import DocumentStore, where
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
    """Each target's production model, with its served holdout MAPE and the data it learnt from."""
    from shared.core.dataset_spec import load_spec
    from shared.core.registry import Registry

    registry = Registry(s, b)
    pointers = registry.production_pointers()
    rows = []
    for target in load_spec(s.dataset_spec).target_names:
        pointer = pointers.get(target) or {}
        record = registry.get(pointer["version"]) if pointer.get("version") else None
        dataset_version = (record or {}).get("dataset_version")
        lineage = b.documents.get(names.DATASET_VERSIONS, dataset_version) if dataset_version else None
        rows.append({"target": target, "version": pointer.get("version"),
                     "promoted_at": pointer.get("promoted_at"), "reason": pointer.get("reason"),
                     "mape": (pointer.get("metrics") or {}).get("mape"),
                     "dataset_version": dataset_version,
                     "excludes": list((lineage or {}).get("retracted") or [])})
    return rows


def cmd_batches(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The most recently collected batches, newest first, with what retrain made of each."""
    found = b.documents.query(where(names.BATCHES, order_by="collected_at", descending=True,
                                    limit=args.limit))
    rows = []
    for doc_id, doc in found:
        outcome = retrain_outcome(b.documents, doc_id, doc)
        rows.append({"batch_id": doc_id, **doc, "retrain": outcome["summary"], "retrain_outcome": outcome})
    return rows


# A version a rerun found already decided reports its status then: production, or
# archived (replaced since); both were promoted by the first run.
_DECISIONS = {"production": "promoted", "archived": "promoted"}
# Which of several claims on one batch (it was announced, or a dead letter replayed,
# more than once) tells its outcome: a finished run first, the newest of a kind.
_CLAIM_RANK = {DONE: 0, RUNNING: 1, FAILED: 2, RELEASED: 3}


def retrain_outcome(documents: DocumentStore, batch_id: str, batch: Mapping[str, Any],
                    now: float | None = None) -> dict[str, Any]:
    """What retrain made of a batch, from the claims on the data-ready events announcing it.

    Retrain claims each data-ready event as ``event_claims/<message id>`` with the
    event's ``batch_id``, and finishes the claim ``done`` with the run's summary
    (``outcome.targets[].decision``), ``failed`` with a ``reason``, or ``released``
    with the ``last_error`` of a retryable failure. A single-field equality query
    (no composite index) finds every claim on the batch.

    ``state`` is one of: not_retrained (a rejected batch is never announced on
    data-ready), pending (no claim yet), running, trained, failed, error.
    """
    if batch.get("status") == names.BATCH_RETRACTED:
        return _retraction_outcome(documents, batch, now)
    if batch.get("status") != names.BATCH_ACCEPTED:
        return {"state": "not_retrained", "summary": "not retrained"}
    retraction_event = (batch.get("retraction") or {}).get("message_id")
    claims = [c for c in documents.query(where(names.EVENT_CLAIMS, ("batch_id", "==", batch_id)))
              if c[0] != retraction_event]
    if not claims:
        announced = "announced, not yet retrained" if batch.get("announced") else "not yet announced"
        return {"state": "pending", "summary": f"pending ({announced})"}
    event_id, claim = min(claims, key=lambda c: (_CLAIM_RANK.get(c[1].get("state", ""), 9),
                                                 -float(c[1].get("finished_at") or c[1].get("claimed_at") or 0)))
    return _claim_outcome(event_id, claim, now)


def _retraction_outcome(documents: DocumentStore, batch: Mapping[str, Any],
                        now: float | None) -> dict[str, Any]:
    """A retracted batch: why, and what the retrain without it made of the data."""
    retraction = batch.get("retraction") or {}
    said = f"retracted by {retraction.get('actor')} ({retraction.get('reason')})"
    event_id = retraction.get("message_id")
    claim = documents.get(names.EVENT_CLAIMS, event_id) if event_id else None
    if claim is None:
        return {"state": "retracted", "summary": f"{said}; retrain without it pending"}
    outcome = _claim_outcome(str(event_id), claim, now)
    return {**outcome, "state": f"retracted, {outcome['state']}",
            "summary": f"{said}; without it {outcome['summary']}"}


def _claim_outcome(event_id: str, claim: Mapping[str, Any], now: float | None) -> dict[str, Any]:
    state, attempts = claim.get("state"), claim.get("attempts", 1)
    base = {"event_id": event_id, "attempts": attempts}
    if state == DONE:
        result = claim.get("outcome") or {}
        targets = {t["target"]: _DECISIONS.get(t["decision"], t["decision"]) for t in result.get("targets", [])}
        listed = ", ".join(f"{target} {decision}" for target, decision in targets.items())
        return {**base, "state": "trained", "targets": targets,
                "dataset_version": result.get("dataset_version"), "summary": f"trained: {listed}"}
    if state == FAILED:
        reason = claim.get("reason", "")
        return {**base, "state": "failed", "reason": reason, "summary": f"failed: {reason}"}
    if state == RUNNING:
        live = float(claim.get("expires_at", 0)) > (time.time() if now is None else now)
        note = f"attempt {attempts}" if live else f"attempt {attempts} stalled: lease expired, awaiting redelivery"
        return {**base, "state": "running", "summary": f"running ({note})"}
    error = claim.get("last_error", "")
    return {**base, "state": "error", "reason": error,
            "summary": f"error on attempt {attempts}, redelivered until it succeeds or is dead-lettered: {error}"}


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


def cmd_retract(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Take an accepted batch back out: retrain leaves it out, predict and monitor stop using it."""
    from shared.collect.retraction import retract

    return [retract(b, s, args.batch_id, args.reason, args.actor)]


def cmd_release(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Accept a quarantined batch that an operator knows is real (its row checks run again)."""
    from shared.collect.service import Collector
    from shared.core.dataset_spec import load_spec

    accepted = Collector(s, b, load_spec(s.dataset_spec), {}).release(args.batch_id, args.reason, args.actor)
    return [{**accepted, "released_from": args.batch_id}]


def cmd_collections(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The most recent collections of every source, newest first, whatever their outcome."""
    found = b.documents.query(where(names.COLLECTIONS, order_by="recorded_at", descending=True,
                                    limit=args.limit))
    return [{**doc, "why": "; ".join(doc.get("reasons") or [])
             or (doc.get("source_failure") or {}).get("reason") or doc.get("error", "")}
            for _, doc in found]


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


def cmd_calendar_list(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every holiday and Ramadan day features flag, from the spec and added by operators, in date order."""
    from shared.core.calendar_store import operator_calendar, parse_day, special_day_rows
    from shared.core.dataset_spec import load_spec

    first = parse_day(args.start, "--from date") if args.start else None
    last = parse_day(args.end, "--to date") if args.end else None
    spec = load_spec(s.dataset_spec)
    return special_day_rows(spec, operator_calendar(b.documents, spec), first, last)


def cmd_calendar_add(b: Backends, s: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Add a holiday (one day, or each day to --to) or a Ramadan period the spec does not list."""
    from shared.core.calendar_store import add_entry
    from shared.core.dataset_spec import load_spec

    entry, added = add_entry(b.documents, load_spec(s.dataset_spec), args.kind, args.start, args.end,
                             args.name, args.actor)
    start, end = str(entry.get("start", entry.get("date"))), str(entry.get("end", entry.get("date")))
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days + 1
    return [{"kind": entry.get("kind", args.kind), "start": start, "end": end, "days": days,
             "name": entry["name"], "added": added, "added_by": entry.get("added_by"),
             "added_at": entry.get("added_at")}]


def calendar_add_note(s: Settings, rows: Sequence[Mapping[str, Any]]) -> str:
    """When the features see an added day (or say it was already there)."""
    if rows and not rows[0]["added"]:
        return (f"already in the calendar since {rows[0]['added_at']} (added by {rows[0]['added_by']}); "
                "nothing changed")
    return ("retrain uses it from its next training (the next data-ready batch or retraction); "
            f"predict within MODEL_REFRESH_SECONDS ({s.model_refresh_seconds:g} s) of its next request")


COLUMNS = {
    "status": ["target", "version", "promoted_at", "mape", "dataset_version", "excludes", "reason"],
    "batches": ["batch_id", "source", "status", "start", "end", "rows", "quality_score",
                "fallback_used", "retrain"],
    "alerts": ["alert_id", "metric", "target", "severity", "status", "value", "threshold",
               "opened_at"],
    "dead-letters": ["id", "topic", "subscription", "delivery_attempts", "last_error", "data"],
    "replay": ["replayed", "topic", "new_message_id"],
    "config": ["variable", "value"],
    "models": ["version", "status", "created_at", "mape", "naive_mape", "dataset_version", "reasons"],
    "history": ["at", "action", "from_version", "to_version", "actor", "reason"],
    "rollback": ["target", "version", "previous", "model_updated_message_id"],
    "release": ["released_from", "batch_id", "status", "start", "end", "rows", "message_id"],
    "collections": ["collected_at", "source", "status", "batch_id", "rows", "fallback_used", "why"],
    "retract": ["batch_id", "status", "start", "end", "reason", "actor", "message_id",
                "already_retracted"],
    "calendar list": ["date", "kind", "name", "source", "added_by", "added_at"],
    "calendar add": ["kind", "start", "end", "days", "name", "added", "added_by", "added_at"],
}
Command = Callable[[Backends, Settings, argparse.Namespace], list[dict[str, Any]]]

# What an empty result means, said on stderr (the exit code stays 0).
EMPTY = {
    "status": "no target has a production model yet",
    "batches": "no batches collected yet",
    "collections": "no collections yet",
    "alerts": "no alerts",
    "dead-letters": "no dead letters",
    "models": "no versions of this target",
    "history": "no promotions or rollbacks of this target",
    "calendar list": "no special days in this range",
}
# A note said on stderr after a command's result, from the settings and the rows.
NOTES: dict[str, Callable[[Settings, Sequence[Mapping[str, Any]]], str]] = {"calendar add": calendar_add_note}
# The embedded documents database, as shared.platform.backends names it.
DOCUMENTS_FILE = "documents.sqlite"
EXIT_OK, EXIT_FAILED, EXIT_NO_STORE = 0, 1, 2
_EMULATORS = (("firestore", "FIRESTORE_EMULATOR_HOST"), ("pubsub", "PUBSUB_EMULATOR_HOST"),
              ("storage", "STORAGE_EMULATOR_HOST"))


def describe_store(s: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The backend and store the CLI reads, in one line."""
    if s.backend == "embedded":
        return f"embedded store {s.state_dir}"
    env = os.environ if environ is None else environ
    emulators = [f"{name} {env[var]}" for name, var in _EMULATORS if env.get(var)]
    return (f"gcp project {s.project}, bucket {s.bucket}, firestore database {s.firestore_database}"
            + (f" (emulators: {', '.join(emulators)})" if emulators else ""))


def missing_store(s: Settings) -> str | None:
    """Why there is no embedded store to read, or None.

    Checked before connecting: connecting creates the directory and empty
    databases, which would then read as a system with nothing in it.
    """
    if s.backend != "embedded":
        return None
    if not s.state_dir.is_dir():
        problem = "does not exist"
    elif not (s.state_dir / DOCUMENTS_FILE).is_file():
        problem = f"holds no documents database ({DOCUMENTS_FILE})"
    else:
        return None
    default = Path(next(v.default for v in VARIABLES if v.name == "STATE_DIR")).resolve()
    deploy = "./deploy.sh local" + ("" if s.state_dir == default else f" --state-dir {s.state_dir}")
    return (f"no embedded store: {s.state_dir} {problem}. Run `{deploy}` to create the local "
            "stack's state there, or set STATE_DIR to a directory that holds one "
            "(BACKEND=gcp to read Google Cloud).")


def _is_empty(command: str, rows: Sequence[Mapping[str, Any]]) -> bool:
    if command == "status":
        return not any(r.get("version") for r in rows)
    return not rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.cli", description="Operate the forecasting system.",
        epilog="The store read is named on stderr. Exit codes: 0 success (an empty result too: "
               "'(none)' or [] on stdout, a note on stderr); 1 the command failed; 2 a configuration "
               "error or no embedded store at STATE_DIR (default <repo>/.state/local, the local "
               "stack's: run ./deploy.sh local).")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, within: Any = sub, **kw: Any) -> argparse.ArgumentParser:
        # ``name`` is the command as typed ("calendar add"); its last word names the subparser.
        p = within.add_parser(name.split()[-1], help=fn.__doc__, description=fn.__doc__, **kw)
        p.set_defaults(fn=fn, columns=COLUMNS[name], command_name=name)
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
    add("config", cmd_config).set_defaults(needs_store=False)
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
    add("collections", cmd_collections).add_argument("--limit", type=int, default=20)
    release = add("release", cmd_release)
    release.add_argument("batch_id", help="a rejected batch (see `batches`)")
    release.add_argument("--reason", required=True, help="why the data is real; recorded on both batches")
    release.add_argument("--actor", default=os.environ.get("USER", "operator"))
    retraction = add("retract", cmd_retract)
    retraction.add_argument("batch_id", help="an accepted batch (see `batches`)")
    retraction.add_argument("--reason", required=True, help="recorded on the batch and in lineage")
    retraction.add_argument("--actor", default=os.environ.get("USER", "operator"))
    calendar = sub.add_parser("calendar", help="The holidays and Ramadan days the features flag (list, add).",
                              description="The holidays and Ramadan days the features flag: the spec's "
                                          "calendar plus the days operators added. Retrain uses an added day "
                                          "from its next training, predict within MODEL_REFRESH_SECONDS.")
    days = calendar.add_subparsers(dest="calendar_command", required=True, metavar="COMMAND")
    listing = add("calendar list", cmd_calendar_list, within=days)
    listing.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day listed")
    listing.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day listed")
    adding = add("calendar add", cmd_calendar_add, within=days)
    adding.add_argument("kind", help="holiday or ramadan")
    adding.add_argument("start", metavar="YYYY-MM-DD", help="the day, or the first day of the range")
    adding.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                        help="the last day of the range (included); default: the one day")
    adding.add_argument("--name", required=True, help='what the day is, e.g. "Eid al-Fitr"')
    adding.add_argument("--actor", default=os.environ.get("USER", "operator"))
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log.configure(settings.project, settings.log_level, stream=sys.stderr)
    print(describe_store(settings), file=sys.stderr)
    if getattr(args, "needs_store", True):
        problem = missing_store(settings)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_NO_STORE
    try:
        rows = args.fn(connect(settings), settings, args)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(rows, indent=2, default=str) if args.json else format_table(rows, args.columns))
    command = args.command_name
    if command in EMPTY and _is_empty(command, rows):
        empty = "no open alerts" if command == "alerts" and not args.all else EMPTY[command]
        print(f"note: {empty} in {describe_store(settings)}", file=sys.stderr)
    if command in NOTES:
        print(f"note: {NOTES[command](settings, rows)}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
