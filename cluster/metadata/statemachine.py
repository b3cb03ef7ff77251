"""The metadata state machine: pure, deterministic apply of one command to SQLite.

A command is a JSON object `{"op": ..., "cid": ..., "args": {...}}`; everything it
needs (time, ids, limits) travels inside it, so applying the same log to two fresh
databases gives identical contents. `apply()` runs one command in one SQLite
transaction on the connection it is given and **never raises** (an exception in a
pysyncobj `@replicated` method is re-applied forever and wedges the cluster): it
returns `{"ok": value}` or `{"error": kind, "message": text}` and rolls back the
command's changes on error.

Exactly-once: a command with a `cid` that was already applied is not applied again;
its stored result is returned instead (bounded to the last `dedup_window` ids). The
log index of the last applied command is stored in `meta.applied_index` in the same
transaction as the change, and an entry at or below it is refused, so no entry can be
applied twice to one database.

`{"op": "batch", "commands": [...]}` applies several commands in one log entry and one
transaction, each with its own result and cid.

A command's meaning never changes for entries already logged: the journal is replayed
at every start, so a member replaying old entries with newer code must reach the state
its peers reached. A new rule comes with a new argument that the new code sends
(`set_primary.require_up_to_date`, `remove_repository.end_running_jobs`,
`complete_job.removed_is_noop`, `lease_jobs.healthy`, `lease_jobs.max_per_target`,
`lease_jobs.fresh_by_update`,
`begin_write.fence`, `accept_dataloss.fence`, `finish_write.repair`,
`set_replication_factor.replication_factor`, `schedule_repairs` items' `matching`); entries
without it
apply as they always did; fencing rules elsewhere act only on intents begun with
`fence`. Members of one cluster must still run code that knows the arguments in use:
an older member ignores an argument it does not know (and diverges), so a rolling
upgrade that adds one needs every member upgraded before a proxy sends it. The same
holds for new commands (`schedule_repairs`, `retry_jobs`, `prune_jobs`,
`clear_needs_verify`): an older member refuses them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from cluster.metadata import commands, handlers, jobs, repair, writes  # noqa: F401 (they register)
from cluster.metadata.commands import Handler
from cluster.metadata.handlers import CommandError

log = logging.getLogger(__name__)

# Command ids remembered for deduplication. Part of the state machine's definition: a
# retry must come back before this many other commands applied (at ~5k commands/s, 10 s:
# twice the default command_timeout). Every member must use the same value.
DEDUP_WINDOW = 50000

# Every declared command (`cluster.metadata.commands`): importing the handler modules
# registers them.
HANDLERS: dict[str, Handler] = commands.handlers()


def encode(command: dict[str, Any]) -> bytes:
    """The canonical bytes of a command (what travels in the Raft log)."""
    return json.dumps(command, sort_keys=True, separators=(",", ":")).encode()


def applied_index(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone()
    return int(row[0]) if row else 0


def apply_payload(
    conn: sqlite3.Connection, payload: bytes, index: int, dedup_window: int = DEDUP_WINDOW
) -> Any:
    """Decode and apply one log entry at `index`. Never raises."""
    try:
        command = json.loads(payload)
        if not isinstance(command, dict):
            raise ValueError("command is not an object")
    except ValueError as exc:
        log.error("undecodable command at index %d: %s", index, exc)
        return {"error": "invalid", "message": f"undecodable command: {exc}"}
    return apply(conn, command, index, dedup_window)


def apply(
    conn: sqlite3.Connection, command: dict[str, Any], index: int, dedup_window: int = DEDUP_WINDOW
) -> Any:
    """Apply `command` as log entry `index` in one transaction. Never raises.

    Returns the command's result (for a batch: the list of its commands' results).
    An error of this database itself (`sqlite3.OperationalError`: disk full, I/O,
    locked) is not a property of the command - other members applied it fine - so its
    result carries `"fatal": True`: the caller must stop this member rather than
    diverge (see `raft.RaftDatabase._apply`)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        if index <= applied_index(conn):
            conn.execute("ROLLBACK")
            log.error("refusing entry %d: already applied up to %d", index, applied_index(conn))
            return {"error": "internal", "message": f"entry {index} already applied"}
        if command.get("op") == "batch":
            commands = command.get("commands") or []
            result: Any = [_apply_one(conn, c, dedup_window) for c in commands]
        else:
            result = _apply_one(conn, command, dedup_window)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('applied_index', ?)", (index,))
        conn.execute("COMMIT")
        return result
    except Exception as exc:  # never let an exception reach pysyncobj
        log.critical("apply failed at index %d: %r", index, exc)
        _rollback(conn)
        fatal = isinstance(exc, sqlite3.OperationalError)
        return {"error": "internal", "message": f"apply failed: {exc!r}", "fatal": fatal}


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.critical("rollback failed: %r", exc)


def _apply_one(conn: sqlite3.Connection, command: Any, dedup_window: int) -> Any:
    """One command inside the open transaction; its changes roll back on error."""
    if not isinstance(command, dict):
        return {"error": "invalid", "message": f"command is not an object: {command!r}"}
    cid = command.get("cid")
    if cid:
        row = conn.execute("SELECT result FROM applied_commands WHERE command_id = ?", (cid,)).fetchone()
        if row is not None:
            return json.loads(row[0])
    handler = HANDLERS.get(str(command.get("op")))
    if handler is None:
        result: Any = {"error": "invalid", "message": f"unknown command {command.get('op')!r}"}
    else:
        conn.execute("SAVEPOINT command")
        try:
            result = {"ok": handler(conn, command.get("args") or {})}
            conn.execute("RELEASE command")
        except CommandError as exc:
            conn.execute("ROLLBACK TO command")
            conn.execute("RELEASE command")
            result = {"error": exc.kind, "message": exc.message}
        except (KeyError, TypeError, ValueError) as exc:
            conn.execute("ROLLBACK TO command")
            conn.execute("RELEASE command")
            result = {"error": "invalid", "message": f"malformed {command.get('op')!r} command: {exc!r}"}
    if cid:
        _remember(conn, cid, result, dedup_window)
    return result


def _remember(conn: sqlite3.Connection, cid: str, result: Any, dedup_window: int) -> None:
    cur = conn.execute(
        "INSERT INTO applied_commands (command_id, result) VALUES (?, ?)",
        (cid, json.dumps(result, sort_keys=True, separators=(",", ":"))),
    )
    seq = cur.lastrowid or 0
    if seq > dedup_window:
        conn.execute("DELETE FROM applied_commands WHERE seq <= ?", (seq - dedup_window,))
