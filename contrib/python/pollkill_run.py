"""Run a command under `pollkill run` from Python and get a structured verdict.

For Ray tasks, multiprocessing workers or any Python code that starts programs which may
hang, spin or leave processes behind: instead of killing the worker (``ray.cancel(force=True)``
kills the worker process, not the program's process tree), let pollkill watch the program
in its own cgroup, reap the whole tree, and say what happened.

    from pollkill_run import run
    verdict = run(["gmsh", "-3", "part.geo"], memory="2GiB", hang_after="2m", wall_time="30m")
    if verdict.retryable:
        ...  # hung, spinning, thrashing, timeout, crashed, oom: worth another try
    verdict.result  # the whole JSON result (docs/ARCHITECTURE.md, "The result")

Only the standard library; Python 3.8 or newer. See docs/RAY.md.
"""

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["Verdict", "PollkillError", "run", "RETRYABLE"]

#: The statuses pollkill's default retry policy (``[retry] on``) retries.
RETRYABLE = frozenset({"crashed", "hung", "spinning", "thrashing", "timeout", "oom"})

# Keyword arguments of run() that become `pollkill run` flags (underscores as dashes).
_FLAGS = (
    "memory", "memory_high", "swap", "cpus", "pids", "wall_time", "cpu_time", "output",
    "hang_after", "hang_cpu_below", "spin_after", "spin_cpu_above", "heartbeat",
    "poll_interval", "kill_grace", "orphans", "thrash_after", "thrash_full_above",
    "evidence_dir", "missing_controllers", "policy", "cgroup_root",
)


class PollkillError(RuntimeError):
    """pollkill itself failed (bad flag, no usable cgroup, ...) and wrote no result.

    ``returncode`` is pollkill's exit status (125 for its own errors) and ``stderr`` what it
    printed, which names the problem and its fix."""

    def __init__(self, message: str, returncode: int, stderr: str):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Verdict:
    """How the command ended, from pollkill's JSON result."""

    status: str  #: ok, failed, crashed, oom, timeout, cpu_limit, hung, spinning, ...
    reason: str  #: one sentence, e.g. "no CPU use (below 0.01 CPU) and no progress for 2s"
    exit_code: Optional[int]  #: the command's exit code, if it exited
    signal: Optional[int]  #: the signal that ended it, if one did
    wall_s: float
    processes_reaped: int  #: processes pollkill had to kill (orphans included)
    returncode: int  #: pollkill's exit status (the command's own, 124 for verdicts, ...)
    stdout: Union[str, bytes, None]  #: captured output (capture_output=True)
    stderr: Union[str, bytes, None]
    result: Dict[str, Any] = field(repr=False)  #: the whole JSON result

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def retryable(self) -> bool:
        """Whether pollkill's default retry policy would run it again."""
        return self.status in RETRYABLE


def _flag_value(value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError("pollkill flags take values, not booleans")
    return str(value)


def run(
    command: Sequence[str],
    *,
    pollkill: str = "pollkill",
    capture_output: bool = True,
    text: bool = True,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    input: Union[str, bytes, None] = None,
    extra_args: Sequence[str] = (),
    **limits: Any,
) -> Verdict:
    """Runs ``command`` under ``pollkill run`` and returns its verdict.

    ``limits`` are `pollkill run` flags with underscores: ``memory="2GiB"``, ``cpus=1``,
    ``wall_time="30m"``, ``hang_after="2m"``, ``spin_after="10m"``, ``kill_grace="1s"``,
    ``policy="strict"``, ... (see ``pollkill run --help``); ``extra_args`` adds any other
    flag as it is. A non-zero exit of the command is a verdict (``failed``), not an
    exception; only pollkill's own failure raises PollkillError.

    The result travels through a temporary file (``--result FILE``) rather than
    ``--result -``: on standard output it would share the stream with the command's own
    output, which a program that ends without a newline would run into.
    """
    if isinstance(command, (str, bytes)):
        raise TypeError("command is a list of words, e.g. ['sh', '-c', '...']")
    unknown = sorted(set(limits) - set(_FLAGS))
    if unknown:
        raise TypeError(f"unknown pollkill flags: {', '.join(unknown)}")
    fd, result_path = tempfile.mkstemp(prefix="pollkill-result-", suffix=".json")
    os.close(fd)
    try:
        argv: List[str] = [pollkill, "run", "--quiet", "--result", result_path]
        for name in _FLAGS:
            if limits.get(name) is not None:
                argv += ["--" + name.replace("_", "-"), _flag_value(limits[name])]
        argv += list(extra_args)
        argv += ["--", *command]
        completed = subprocess.run(
            argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            input=input,
            capture_output=capture_output,
            text=text if capture_output or input is not None else None,
        )
        with open(result_path) as f:
            content = f.read()
    finally:
        try:
            os.unlink(result_path)
        except FileNotFoundError:
            pass
    if not content.strip():
        err = completed.stderr if capture_output else None
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        raise PollkillError(
            f"pollkill run failed with exit {completed.returncode} and wrote no result"
            + (f": {err.strip()}" if err else ""),
            completed.returncode,
            err or "",
        )
    result = json.loads(content)
    return Verdict(
        status=result["status"],
        reason=result["reason"],
        exit_code=result.get("exit_code"),
        signal=result.get("signal"),
        wall_s=result.get("wall_s", 0.0),
        processes_reaped=result.get("processes_reaped", 0),
        returncode=completed.returncode,
        stdout=completed.stdout,
        stderr=completed.stderr,
        result=result,
    )
