"""Every RPC carries routing annotations the proxy can route from."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from google.protobuf import descriptor

import gitraft.v1
from gitraft.v1 import lint_pb2


def all_services() -> list[descriptor.ServiceDescriptor]:
    services = []
    for info in pkgutil.iter_modules(gitraft.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"gitraft.v1.{info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


def all_methods() -> list[descriptor.MethodDescriptor]:
    return [m for s in all_services() for m in s.methods]


def test_there_are_services() -> None:
    names = {s.name for s in all_services()}
    assert {"RepositoryService", "RefService", "CommitService", "SmartHTTPService"} <= names


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.full_name)
def test_every_rpc_has_op_type(method: descriptor.MethodDescriptor) -> None:
    options = method.GetOptions()
    assert options.HasExtension(lint_pb2.op_type), f"{method.full_name} lacks (op_type)"
    op = options.Extensions[lint_pb2.op_type]
    assert op.op != lint_pb2.OperationMsg.UNKNOWN, f"{method.full_name}: op is UNKNOWN"
    assert op.scope_level != lint_pb2.OperationMsg.SCOPE_UNSPECIFIED, f"{method.full_name}: no scope"


def _marked(msg: descriptor.Descriptor, ext: object) -> list[str]:
    return [f.name for f in msg.fields if f.GetOptions().Extensions[ext]]  # type: ignore[index]


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.full_name)
def test_scoped_rpcs_name_their_target(method: descriptor.MethodDescriptor) -> None:
    op = method.GetOptions().Extensions[lint_pb2.op_type]
    if op.scope_level == lint_pb2.OperationMsg.REPOSITORY:
        marked = _marked(method.input_type, lint_pb2.target_repository)
        assert len(marked) == 1, f"{method.full_name}: exactly one target_repository field, got {marked}"
        field = method.input_type.fields_by_name[marked[0]]
        assert field.message_type.full_name == "gitraft.v1.Repository"
    elif op.scope_level == lint_pb2.OperationMsg.STORAGE:
        marked = _marked(method.input_type, lint_pb2.storage)
        assert len(marked) == 1, f"{method.full_name}: exactly one storage field, got {marked}"
