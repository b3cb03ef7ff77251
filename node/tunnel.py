"""The far end of a replication tunnel, run by git as an `ext::` transport command.

    git fetch "ext::<python> -I <this file> <socket path>" '+refs/*:refs/*'

Pipes its stdin to the unix socket at `<socket path>` and the socket back to its stdout,
until the socket reaches end of file. The node (node.replication_source.Tunnel)
listens on the socket and bridges it to the source node's UploadPackSession stream, so
this program holds no token, speaks no gRPC and imports only the standard library (it
runs under `python -I`). Exit status: 0 after the socket closed, 1 if it cannot connect.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

CHUNK_SIZE = 64 * 1024


def _stdin_to_socket(sock: socket.socket) -> None:
    try:
        while data := os.read(0, CHUNK_SIZE):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the node closed the socket; the main thread ends on its EOF


def _socket_to_stdout(sock: socket.socket) -> None:
    while data := sock.recv(CHUNK_SIZE):
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: tunnel.py SOCKET_PATH", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
    except OSError as exc:
        print(f"gitraft tunnel: cannot connect to {argv[1]!r}: {exc}", file=sys.stderr)
        return 1
    threading.Thread(target=_stdin_to_socket, args=(sock,), daemon=True).start()
    try:
        _socket_to_stdout(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # git hung up
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
