"""Telling the service that its file changed: run a command, or signal a pid.

Failures are logged, not raised: the file is already in place, and running the command
again would not change what it reads. The command's stdout is discarded and its stderr
goes to the node's stderr; the log line has the exit status only, as the command's
output is not ours to vet for secrets.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import structlog

log = structlog.get_logger("aether.filesink")


async def run_command(
    argv: list[str], *, timeout: float, env: dict[str, str], target: Path
) -> bool:
    """Run ``argv`` (no shell) and wait for it; ``True`` when it exits 0."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, **env},
        )
    except OSError as exc:
        log.error("reload command cannot start", command=argv[0], target=str(target),
                  error=exc.strerror or type(exc).__name__)
        return False
    try:
        async with asyncio.timeout(timeout):
            status = await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        log.error("reload command timed out and was killed", command=argv[0],
                  target=str(target), timeout=timeout)
        return False
    if status != 0:
        log.error("reload command failed", command=argv[0], target=str(target), status=status)
        return False
    return True


def send_signal(pid_file: Path, signum: signal.Signals, *, target: Path) -> bool:
    """Send ``signum`` to the pid written in ``pid_file``; ``True`` when it was sent."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
        if pid <= 0:
            raise ValueError(pid)
        os.kill(pid, signum)
    except FileNotFoundError:
        log.error("pid file does not exist; no signal sent", pid_file=str(pid_file),
                  target=str(target))
        return False
    except ValueError:
        log.error("pid file does not hold a pid; no signal sent", pid_file=str(pid_file),
                  target=str(target))
        return False
    except OSError as exc:
        log.error("cannot signal the process", pid_file=str(pid_file), signal=signum.name,
                  error=type(exc).__name__, target=str(target))
        return False
    return True
