"""How the target node names a source's failure (unit: a fake call stands in for the
source's UploadPackSession; the real one is tests/integration/test_node_replication_errors.py).

grpc.aio reports a send that raced the end of a streaming call as INTERNAL "Internal
error from Core", in place of the status the peer ended it with. A source that answered
"00" and ended before the target's first message went out showed that in CI instead of
FAILED_PRECONDITION (the test above was red there: 1 run in ~20 on a loaded machine).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from common.errors import FailedPreconditionError, UnavailableError
from gitraft.v1 import repository_pb2 as pb
from gitraft.v1 import shared_pb2
from node.replication_source import Session, SourceRepository, Tunnel, failure_of


def lost_status() -> grpc.aio.AioRpcError:
    """What grpc.aio raises when its own send fails on a call that already ended."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "Internal error from Core"
    )


class FakeCall:
    """An UploadPackSession call that answers `stdout` and then fails with `error`."""

    def __init__(self, stdout: bytes, error: grpc.aio.AioRpcError) -> None:
        self._answers: list[Any] = [pb.UploadPackSessionResponse(stdout=stdout)]
        self._error = error

    async def read(self) -> Any:
        if self._answers:
            return self._answers.pop(0)
        raise self._error

    def cancel(self) -> None:
        pass


class FakeSource(SourceRepository):
    def __init__(self, call: FakeCall) -> None:
        super().__init__("127.0.0.1:1", "t", shared_pb2.Repository(relative_path="a.git"))
        self._call = call

    def open_session(self, git_protocol: str = "") -> Session:
        return Session(self, self._call, asyncio.Queue())


async def served(call: FakeCall) -> Tunnel:
    """A Tunnel that served one connection (git's side closed at once) bridged to `call`."""
    tunnel = Tunnel(FakeSource(call))
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await tunnel.serve(reader, writer)
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await asyncio.wait_for(done.wait(), 10)
        writer.close()
    finally:
        server.close()
    return tunnel


async def test_a_short_answer_is_failed_precondition_whatever_status_the_call_then_reports() -> None:
    tunnel = await served(FakeCall(b"00", lost_status()))
    assert isinstance(tunnel.error, FailedPreconditionError), tunnel.error
    assert "ended before its first pkt-line" in str(tunnel.error)


async def test_a_failure_before_any_answer_keeps_the_sources_status() -> None:
    refused = grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "repository not found"
    )
    tunnel = await served(FakeCall(b"", refused))
    assert tunnel.error is not None and tunnel.error.code == grpc.StatusCode.NOT_FOUND, tunnel.error


def test_a_lost_status_is_named_as_what_happened_not_internal() -> None:
    error = failure_of(lost_status(), "source 127.0.0.1:1")
    assert isinstance(error, UnavailableError)
    assert "Internal error from Core" not in str(error)
    assert "session ended" in str(error)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.NOT_FOUND])
def test_other_statuses_pass_through(code: grpc.StatusCode) -> None:
    error = failure_of(
        grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "real cause"), "source x"
    )
    assert error.code == code and "real cause" in str(error)
