"""Fences of writes in flight (DESIGN.md "Write", invariant 8), for the apply functions.

A write intent begun with fencing (`begin_write` with `fence`) carries a JSON record in
`write_intents.fence`:

    {"storage": "a",      # the storage that executes the write
     "primary": "a",      # the repository's primary when the intent began
     "generation": 4,     # the repository's generation when the intent began
     "fenced": null,      # why the write may no longer be acknowledged (first reason wins)
     "copied_to": []}     # replicas raised by a job copying from "storage" meanwhile

Every command that makes a write in flight unsafe to acknowledge marks the open intents
it concerns here, in the same transaction: the primary moving away (`set_primary`),
data loss accepted on another storage, the storage unassigned, another write committed,
replication overwriting the storage. `finish_write` then refuses the acknowledgement
(see `cluster.metadata.writes`). Intents without a record (logged by older code) are
never touched, so replayed journals keep their meaning.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any


def open_fences(conn: sqlite3.Connection, repository_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(intent_id, fence record) of the repository's open intents that have one, by id."""
    rows = conn.execute(
        "SELECT intent_id, fence FROM write_intents WHERE repository_id = ? AND result IS NULL"
        " AND fence IS NOT NULL ORDER BY intent_id",
        (repository_id,),
    )
    return [(iid, dict(json.loads(fence))) for iid, fence in rows.fetchall()]


def save(conn: sqlite3.Connection, intent_id: str, fence: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE write_intents SET fence = ? WHERE intent_id = ?",
        (json.dumps(fence, sort_keys=True), intent_id),
    )


def fence_intents(
    conn: sqlite3.Connection,
    repository_id: str,
    reason: str,
    *,
    on: Iterable[str] | None = None,
    except_on: Iterable[str] = (),
) -> None:
    """Mark the repository's open intents executing on a storage in `on` (None: any)
    and not in `except_on` as fenced for `reason`, unless already fenced."""
    only = None if on is None else set(on)
    spared = set(except_on)
    for intent_id, fence in open_fences(conn, repository_id):
        storage = fence["storage"]
        if fence.get("fenced") or storage in spared or (only is not None and storage not in only):
            continue
        fence["fenced"] = reason
        save(conn, intent_id, fence)


def note_copy(conn: sqlite3.Connection, repository_id: str, source: str, target: str) -> None:
    """A replication job from `source` raised `target`: the copy may hold part of any
    write in flight on `source`. Record it in those intents (their replica set to repair
    if they end fenced) and fence the intents in flight on `target` (its refs were just
    replaced by a mirror)."""
    for intent_id, fence in open_fences(conn, repository_id):
        if fence["storage"] == source and target not in fence["copied_to"]:
            fence["copied_to"] = sorted([*fence["copied_to"], target])
            save(conn, intent_id, fence)
    fence_intents(
        conn,
        repository_id,
        f"replica {target!r} was overwritten by replication during the write",
        on=[target],
    )
