"""Structured logs: one JSON object per line on stderr, snake_case fields.

Every record carries `component` and, when one is set, the `correlation_id` of the
request being served (a ContextVar set by `common.interceptors.ErrorInterceptor` from
gRPC metadata under CORRELATION_METADATA_KEY, by the git HTTP gateway for each request,
and by a replication worker from its job's params: one push's id appears in the
gateway's, the proxy's and the nodes' logs and in the replication jobs it caused).

`bind_fields(repository=..., storage=..., job_id=...)` adds fields to every record
logged in the current context (task) until `unbind_fields(token)`; `extra=` fields
given to one call win over bound ones.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from contextvars import ContextVar, Token
from typing import Any

CORRELATION_METADATA_KEY = "x-gitraft-correlation-id"
correlation_id: ContextVar[str] = ContextVar("correlation_id", default="")
_bound: ContextVar[tuple[tuple[str, Any], ...]] = ContextVar("log_fields", default=())

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind_fields(**fields: Any) -> Token[tuple[tuple[str, Any], ...]]:
    """Add `fields` to every record of this context; returns the token for unbind_fields."""
    merged = dict(_bound.get())
    merged.update({k: v for k, v in fields.items() if v not in (None, "")})
    return _bound.set(tuple(merged.items()))


def unbind_fields(token: Token[tuple[tuple[str, Any], ...]]) -> None:
    """Restore the fields bound before `bind_fields` returned `token`."""
    _bound.reset(token)


def new_correlation_id() -> str:
    """A fresh random id for a request that arrived without one."""
    return uuid.uuid4().hex[:16]


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line; `extra=` fields become top-level keys."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "component": getattr(record, "component", self._component),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            out["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in out and not key.startswith("_"):
                out[key] = value
        for key, value in _bound.get():
            out.setdefault(key, value)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(component: str, level: str = "info") -> None:
    """Route the root logger to stderr as JSON lines. Idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_gitraft", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    handler._gitraft = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
