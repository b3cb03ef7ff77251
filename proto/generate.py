"""Regenerate the Python stubs of proto/gitraft/v1/*.proto into gitraft/v1/ (`make proto`).

The stubs are committed so that a fresh clone needs no generation step;
tests/unit/test_proto_stubs.py fails when they no longer match the .proto files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

PROTO_ROOT = Path(__file__).resolve().parent
# Generated modules land in the top-level `gitraft` package: `import gitraft.v1.ref_pb2`.
OUT_ROOT = PROTO_ROOT.parent


def proto_files() -> list[str]:
    """The .proto sources, relative to the proto root, sorted."""
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "gitraft").rglob("*.proto"))


def include_dirs() -> list[str]:
    """Our root plus grpc_tools' bundled well-known types (descriptor.proto)."""
    import grpc_tools  # type: ignore[import-untyped]

    return [str(PROTO_ROOT), str(Path(grpc_tools.__file__).parent / "_proto")]


def main() -> int:
    args = ["protoc", *(f"-I{d}" for d in include_dirs())]
    args += [f"--python_out={OUT_ROOT}", f"--pyi_out={OUT_ROOT}", f"--grpc_python_out={OUT_ROOT}"]
    args += proto_files()
    return int(protoc.main(args))


if __name__ == "__main__":
    sys.exit(main())
