"""Run a command that dies with the process that started it (Linux).

    python -m cluster.local.pdeathsig PARENT_PID SIGNAL -- COMMAND [ARGS...]

Sets PR_SET_PDEATHSIG to SIGNAL, checks that PARENT_PID is still the parent (it may have
died before the flag was set), then execs COMMAND in place: same pid, and the flag
survives exec. Used by `gitraft dev` and the test harness so that no child outlives a
launcher killed with SIGKILL.

Caveat of the kernel feature: the signal fires when the *thread* that forked the child
exits, so spawn such children from a long-lived thread (the main thread).

Imports nothing heavy: it runs before every child process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Exec the command; returns (exit code 2 or 1) only on bad usage or a dead parent."""
    if len(argv) < 4 or argv[2] != "--":
        print(
            "usage: python -m cluster.local.pdeathsig PARENT_PID SIGNAL -- COMMAND [ARGS...]", file=sys.stderr
        )
        return 2
    parent, sig, command = int(argv[0]), int(argv[1]), argv[3:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.Signals(sig), 0, 0, 0) != 0:
            print(f"pdeathsig: prctl failed: errno {ctypes.get_errno()}", file=sys.stderr)
            return 1
    if os.getppid() != parent:
        return 1
    os.execvp(command[0], command)
    return 1  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
