"""The committed Python stubs match the .proto sources (run `make proto` when this fails)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "proto"))
generate = importlib.import_module("generate")


def compiled_descriptors(tmp_path: Path) -> dict[str, bytes]:
    from grpc_tools import protoc

    out = tmp_path / "set.pb"
    args = ["protoc", *(f"-I{d}" for d in generate.include_dirs()), f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *generate.proto_files()]) == 0
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f.SerializeToString() for f in fds.file}


def without_json_names(fdp: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc's descriptor sets carry json_name; the Python generator strips it."""

    def strip(msg: descriptor_pb2.DescriptorProto) -> None:
        for f in msg.field:
            f.ClearField("json_name")
        for nested in msg.nested_type:
            strip(nested)

    for msg in fdp.message_type:
        strip(msg)
    for ext in fdp.extension:
        ext.ClearField("json_name")
    return fdp


@pytest.mark.parametrize("proto", generate.proto_files())
def test_stub_matches_proto(proto: str, tmp_path: Path) -> None:
    module = importlib.import_module(proto.removesuffix(".proto").replace("/", ".") + "_pb2")
    committed = without_json_names(
        descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    )
    fresh = without_json_names(
        descriptor_pb2.FileDescriptorProto.FromString(compiled_descriptors(tmp_path)[proto])
    )
    assert committed == fresh, f"{proto}: stubs are stale; run `make proto`"
    grpc_module = Path(module.__file__).with_name(Path(module.__file__).stem + "_grpc.py")
    assert grpc_module.exists(), f"missing {grpc_module.name}"
