"""Metadata commands, each declared once next to its apply function.

    @command(result=results.job_list, context=("max_attempts",))
    def lease_jobs(conn: sqlite3.Connection, a: dict[str, Any]) -> list[dict[str, Any]]: ...

A declaration names the op (the handler's name unless given) and says how the store's
typed call becomes the command's `args` and how the applied result comes back:

- the store method's arguments (bound to the `api.MetadataStore` signature of the same
  name) are the args, made JSON-like (`plain`): None dropped, sets sorted, tuples as
  lists; `send` may rename or derive some (e.g. `begin_write.fence`);
- `constants` are sent with every new command (rules added after older entries were
  logged, see `statemachine`);
- `context` names values the store adds itself (`max_attempts` from its config,
  `correlation_id` of the current request);
- `result` turns the handler's JSON result into the api's return value (it may raise);
- `skip`: when it returns a value for the args, nothing is submitted and that value is
  the answer (e.g. an empty `clear_needs_verify`).

`REGISTRY` gives the state machine its dispatch table (`statemachine.HANDLERS`) and the
store its methods (`store.command`). The wire format is the contract with logs already
written: op names and arg keys never change meaning (see `statemachine`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

Handler = Callable[[sqlite3.Connection, dict[str, Any]], Any]
H = TypeVar("H", bound=Handler)


_SCALARS = (str, int, float, bool)


def plain(value: Any) -> Any:
    """`value` as JSON-like data: sets sorted, tuples as lists, None-valued keys dropped."""
    if isinstance(value, _SCALARS) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _same(value: Any) -> Any:
    return value


def _nothing(value: Any) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """One state-machine command: its op, apply function and store-side mapping."""

    op: str
    handler: Handler
    result: Callable[[Any], Any] = _nothing
    send: Callable[[dict[str, Any]], dict[str, Any]] = _same
    constants: Mapping[str, Any] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    skip: Callable[[dict[str, Any]], Any] | None = None

    def args(self, call: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        """The command's wire args for a store call's bound arguments (see module doc)."""
        args = self.send(plain(call))
        args.update(self.constants)
        args.update({k: context[k] for k in self.context if context.get(k) is not None})
        return args


REGISTRY: dict[str, Command] = {}


def command(
    op: str | None = None,
    *,
    result: Callable[[Any], Any] = _nothing,
    send: Callable[[dict[str, Any]], dict[str, Any]] = _same,
    constants: Mapping[str, Any] | None = None,
    context: tuple[str, ...] = (),
    skip: Callable[[dict[str, Any]], Any] | None = None,
) -> Callable[[H], H]:
    """Register the decorated apply function as the command `op` (default: its name)."""

    def register(handler: H) -> H:
        name = op or handler.__name__
        if name in REGISTRY:
            raise ValueError(f"command {name!r} declared twice")
        REGISTRY[name] = Command(name, handler, result, send, dict(constants or {}), context, skip)
        return handler

    return register


def handlers() -> dict[str, Handler]:
    """op -> apply function, for every declared command (plus `noop`, the barrier)."""
    table: dict[str, Handler] = {"noop": lambda conn, args: None}
    table.update({name: c.handler for name, c in REGISTRY.items()})
    return table
