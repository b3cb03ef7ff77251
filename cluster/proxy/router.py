"""Routing: the registry of every RPC (built from the proto descriptors) and pure route choice.

The registry is never a hand-written table: `Registry.from_package()` walks every
service of the `gitraft.v1` descriptors and reads each method's `op_type` annotation
and the request fields marked `target_repository` / `storage`. Methods of the services
in LOCAL_SERVICES are served by the proxy itself; every other method is forwarded.

Route choice is pure: the `route_*` functions take a repository's metadata and the set
of storages healthy for the cluster, and return a small route value or raise:

    op / scope              route                          goes to
    MUTATOR / REPOSITORY    RepositoryMutatorRoute         the primary
    ACCESSOR / REPOSITORY   RepositoryAccessorRoute        one healthy up-to-date replica
    MAINTENANCE / REPOSITORY RepositoryMaintenanceRoute    every healthy assigned replica
    any / STORAGE           StorageRoute                   the named storage
    any / SERVER            LocalRoute                     answered by the proxy

Refusals (STYLE.md): UnavailableError when waiting is enough (the primary is down or
outdated but an up-to-date healthy replica exists, so failover will fix it);
FailedPreconditionError when no healthy replica holds the latest generation (data loss
pending). Both messages name the storages involved.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf import descriptor, message, message_factory

import gitraft.v1
from cluster.metadata.api import Repository
from common.errors import FailedPreconditionError, NotFoundError, UnavailableError
from gitraft.v1 import lint_pb2

# Services the proxy serves itself (never forwarded to a node).
LOCAL_SERVICES = frozenset({"gitraft.v1.ClusterService", "gitraft.v1.TransactionService"})


class OpType(StrEnum):
    MUTATOR = "mutator"
    ACCESSOR = "accessor"
    MAINTENANCE = "maintenance"


class Scope(StrEnum):
    REPOSITORY = "repository"
    STORAGE = "storage"
    SERVER = "server"


_OPS = {
    lint_pb2.OperationMsg.MUTATOR: OpType.MUTATOR,
    lint_pb2.OperationMsg.ACCESSOR: OpType.ACCESSOR,
    lint_pb2.OperationMsg.MAINTENANCE: OpType.MAINTENANCE,
}
_SCOPES = {
    lint_pb2.OperationMsg.REPOSITORY: Scope.REPOSITORY,
    lint_pb2.OperationMsg.STORAGE: Scope.STORAGE,
    lint_pb2.OperationMsg.SERVER: Scope.SERVER,
}


class RegistryError(Exception):
    """A method whose annotations the router cannot route from (a proto bug)."""


@dataclass(frozen=True)
class MethodInfo:
    """Everything the proxy needs to know about one RPC."""

    path: str  # gRPC path, e.g. "/gitraft.v1.RepositoryService/CreateRepository"
    service: str
    name: str
    op: OpType
    scope: Scope
    client_streaming: bool
    server_streaming: bool
    request_class: type[message.Message]
    response_class: type[message.Message]
    # Request field holding the target repository (REPOSITORY scope).
    target_field: str = ""
    # Request field naming the storage (STORAGE scope).
    storage_field: str = ""
    # Request field marked additional_repository (a second repository, e.g. a source).
    additional_field: str = ""
    local: bool = False
    # Marked node_internal: node-to-node only, never served by a proxy.
    node_internal: bool = False

    @property
    def route_label(self) -> str:
        """A short label for metrics and logs, e.g. "mutator/repository" or "local"."""
        return "local" if self.local else f"{self.op}/{self.scope}"


class Registry:
    """gRPC path -> MethodInfo, for every method of the given services."""

    def __init__(self, methods: Iterable[MethodInfo]) -> None:
        self._methods = {m.path: m for m in methods}

    @classmethod
    def from_services(cls, services: Iterable[descriptor.ServiceDescriptor]) -> Registry:
        """Build from service descriptors; RegistryError for a method lacking annotations."""
        return cls(method_info(m) for s in services for m in s.methods)

    @classmethod
    def from_package(cls) -> Registry:
        """Every service of every `gitraft.v1.*_pb2` module."""
        return cls.from_services(all_services())

    def get(self, path: str) -> MethodInfo | None:
        return self._methods.get(path)

    def methods(self) -> list[MethodInfo]:
        return sorted(self._methods.values(), key=lambda m: m.path)

    def forwarded(self) -> list[MethodInfo]:
        return [m for m in self.methods() if not m.local]


def all_services() -> list[descriptor.ServiceDescriptor]:
    """The service descriptors of every generated module in gitraft.v1."""
    services: list[descriptor.ServiceDescriptor] = []
    for info in sorted(pkgutil.iter_modules(gitraft.v1.__path__), key=lambda i: i.name):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"gitraft.v1.{info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


def method_info(method: descriptor.MethodDescriptor) -> MethodInfo:
    """Read one method's routing annotations; RegistryError when they are missing."""
    options: Any = method.GetOptions()
    if not options.HasExtension(lint_pb2.op_type):
        raise RegistryError(f"{method.full_name} lacks an op_type annotation")
    annotation = options.Extensions[lint_pb2.op_type]
    op, scope = _OPS.get(annotation.op), _SCOPES.get(annotation.scope_level)
    if op is None or scope is None:
        raise RegistryError(f"{method.full_name}: op_type has no op or no scope")
    target = _marked_field(method.input_type, lint_pb2.target_repository)
    storage = _marked_field(method.input_type, lint_pb2.storage)
    if scope is Scope.REPOSITORY and not target:
        raise RegistryError(f"{method.full_name}: repository-scoped but no target_repository field")
    if scope is Scope.STORAGE and not storage:
        raise RegistryError(f"{method.full_name}: storage-scoped but no storage field")
    service = method.containing_service.full_name
    return MethodInfo(
        path=f"/{service}/{method.name}",
        service=service,
        name=method.name,
        op=op,
        scope=scope,
        client_streaming=method.client_streaming,
        server_streaming=method.server_streaming,
        request_class=message_factory.GetMessageClass(method.input_type),
        response_class=message_factory.GetMessageClass(method.output_type),
        target_field=target,
        storage_field=storage,
        additional_field=_marked_field(method.input_type, lint_pb2.additional_repository),
        local=service in LOCAL_SERVICES,
        node_internal=bool(options.Extensions[lint_pb2.node_internal]),
    )


def _field_options(field: descriptor.FieldDescriptor) -> Any:
    return field.GetOptions()


def _marked_field(msg: descriptor.Descriptor, extension: object) -> str:
    marked = [f.name for f in msg.fields if _field_options(f).Extensions[extension]]
    if len(marked) > 1:
        raise RegistryError(f"{msg.full_name}: more than one field marked {marked!r}")
    return marked[0] if marked else ""


# --- routes ------------------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryMutatorRoute:
    repository: Repository
    primary: str


@dataclass(frozen=True)
class RepositoryAccessorRoute:
    repository: Repository
    storage: str


@dataclass(frozen=True)
class RepositoryMaintenanceRoute:
    repository: Repository
    storages: tuple[str, ...]


@dataclass(frozen=True)
class StorageRoute:
    storage: str


@dataclass(frozen=True)
class LocalRoute:
    pass


def route_mutator(repository: Repository, healthy: set[str]) -> RepositoryMutatorRoute:
    """The primary, when it is healthy and up to date; otherwise raise (see module doc)."""
    primary = repository.primary
    up_to_date = repository.up_to_date()
    if primary in healthy and primary in up_to_date:
        return RepositoryMutatorRoute(repository, primary)
    _refuse_if_no_healthy_latest(repository, healthy)
    state = "unhealthy" if primary not in healthy else "outdated"
    raise UnavailableError(
        f"primary {primary!r} of repository {repository.relative_path!r} is {state}; retry after failover"
    )


def route_accessor(
    repository: Repository,
    healthy: set[str],
    choose: Callable[[Sequence[str]], str] = random.choice,
    writing: Collection[str] = frozenset(),
) -> RepositoryAccessorRoute:
    """One of the healthy replicas at the repository's generation, picked by `choose`.

    Storages in `writing` (under an open write intent: their refs may hold a write not
    yet recorded) are avoided while another candidate exists; if every candidate is under
    an intent, the primary when it is a candidate (the one consistent choice)."""
    candidates = sorted(s for s in repository.up_to_date() if s in healthy)
    if not candidates:
        _refuse_if_no_healthy_latest(repository, healthy)
    settled = [s for s in candidates if s not in writing]
    if settled:
        return RepositoryAccessorRoute(repository, choose(settled))
    if repository.primary in candidates:
        return RepositoryAccessorRoute(repository, repository.primary)
    return RepositoryAccessorRoute(repository, choose(candidates))


def route_maintenance(repository: Repository, healthy: set[str]) -> RepositoryMaintenanceRoute:
    """Every healthy assigned replica that holds data (generation >= 0)."""
    storages = tuple(
        sorted(r.storage for r in repository.replicas if r.generation >= 0 and r.storage in healthy)
    )
    if not storages:
        raise UnavailableError(f"no healthy replica of repository {repository.relative_path!r} holds data")
    return RepositoryMaintenanceRoute(repository, storages)


def route_storage(storage: str, known: Iterable[str]) -> StorageRoute:
    """The named storage; NotFoundError when the cluster does not know it."""
    if storage not in set(known):
        raise NotFoundError(f"unknown storage: {storage!r}")
    return StorageRoute(storage)


def _refuse_if_no_healthy_latest(repository: Repository, healthy: set[str]) -> None:
    latest = repository.up_to_date()
    if any(s in healthy for s in latest):
        return
    raise FailedPreconditionError(
        f"repository {repository.relative_path!r} is unavailable: its latest generation "
        f"{repository.generation} is only on {', '.join(map(repr, latest)) or 'no storage'}, "
        "none healthy (data loss pending)"
    )
