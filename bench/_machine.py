"""What machine a benchmark ran on: printed with every figure, since they mean little
without it (the project's machines are small and often shared)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    """1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def git_version() -> str:
    done = subprocess.run(["git", "version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().removeprefix("git version ")


def describe() -> str:
    """One line: cores, CPU model, load averages, Python and git versions."""
    return (
        f"machine: nproc {os.cpu_count()}, cpu {cpu_model()!r}, load average {load()}, "
        f"python {platform.python_version()}, git {git_version()}"
    )
