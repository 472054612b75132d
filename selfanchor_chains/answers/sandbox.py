"""Running model-written programs in a sandbox: never in our process, never with our privileges or network.

Each program runs in a fresh Python interpreter (``python -I``: no environment variables of Python's, no user
site, no current folder on the path) in a throw-away folder, with an empty environment (no secrets), its own
process group, and limits on CPU time, address space, file size, open files and processes. As root, where the
kernel allows it, it also runs in new network, PID and mount namespaces (``unshare --net --pid --mount``: no
network at all; when the program's init dies, the kernel kills every process it left; ``/tmp``, ``/var/tmp`` and
``/dev/shm`` are fresh read-only tmpfs but for its own 16 MiB work folder) under the ``nobody`` user (it can write
nothing else, and the process limit applies to it alone). On timeout the whole process group is killed; the folder
is always removed. :func:`isolation` says which of these this machine gives. Without the namespaces (not root, or
a kernel that refuses them) the program has the network, and a process it moves into a session of its own
(``os.setsid``) can outlive the group kill: run hostile code as root, or inside a container.

The program's verdict is read from its exit status only: 0 passes; anything else (an ``AssertionError``, a crash,
a limit, a timeout) fails, with an error kind for the logs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ExecutionResult", "SandboxLimits", "isolation", "run_program"]

_NOBODY = "nobody"
_OUTPUT_CHARS = 2000  # of stdout / stderr kept for the logs


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one program.

    Attributes:
        timeout_s: Wall-clock limit; the process group is killed when it passes.
        memory_bytes: Address-space limit (``RLIMIT_AS``).
        file_bytes: Largest file the program may write (``RLIMIT_FSIZE``).
        processes: Processes the program's user may have (``RLIMIT_NPROC``; enforced under the ``nobody`` user).
        open_files: Open file descriptors (``RLIMIT_NOFILE``).
    """

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 16
    open_files: int = 64

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_bytes", "file_bytes", "processes", "open_files"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ExecutionResult:
    """What became of one program.

    Attributes:
        passed: It exited with status 0 within the limits.
        error: None when passed; else ``"timeout"``, ``"assertion"``, ``"syntax"``, ``"memory"``, ``"killed"``
            (a signal, e.g. a CPU limit) or ``"error"`` (any other exception or exit status).
        returncode: The exit status (negative: the signal that ended it); None on timeout.
        stdout: The start of its standard output.
        stderr: The start of its standard error.
        isolation: What isolated it (see :func:`isolation`).
    """

    passed: bool
    error: str | None
    returncode: int | None
    stdout: str
    stderr: str
    isolation: tuple[str, ...]


# The limits are set by a small launcher that then replaces itself with the program (exec): no preexec_fn, which is
# unsafe in a process with threads (torch's), and the limits are in place before any model-written line runs.
# Isolated, it first (still root, in its own mount namespace) hides the machine's writable temp folders under fresh
# root-owned tmpfs and gives the program a work folder of its own on one of them.
_LAUNCHER = """
import ctypes, os, resource, sys
cpu, memory, fsize, nofile, nproc, uid, gid, python = sys.argv[1:9]
uid, gid = int(uid), int(gid)
if uid >= 0:
    with open("program.py", "rb") as fh:
        source = fh.read()
    libc = ctypes.CDLL(None, use_errno=True)
    for target in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(target) and libc.mount(b"tmpfs", target.encode(), b"tmpfs", 6, b"size=16m,mode=0755"):
            raise SystemExit("sandbox: cannot mount a tmpfs on %s (errno %d)" % (target, ctypes.get_errno()))
    os.mkdir("/tmp/work", 0o700)
    os.chown("/tmp/work", uid, gid)
    with open("/tmp/work/program.py", "wb") as fh:
        fh.write(source)
    os.chdir("/tmp/work")
for name, value in (("CPU", cpu), ("AS", memory), ("FSIZE", fsize), ("NOFILE", nofile), ("CORE", "0")):
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (int(value), int(value)))
if uid >= 0:
    resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
env = {"PATH": "/usr/bin:/bin", "HOME": os.getcwd(), "TMPDIR": os.getcwd()}
os.execve(python, [python, "-I", "-B", *sys.argv[9:]], env)
"""
_UNSHARE = ("--net", "--pid", "--mount", "--fork", "--kill-child")


@dataclass(frozen=True)
class _Isolation:
    unshare: str | None  # the unshare binary when namespaces and the user drop work; None: basic isolation only
    uid: int = -1
    gid: int = -1
    python: str = sys.executable  # the interpreter the program runs in


def _launcher(plan: _Isolation, limits: SandboxLimits, *program: str) -> list[str]:
    numbers = (int(limits.timeout_s) + 1, limits.memory_bytes, limits.file_bytes, limits.open_files, limits.processes)
    command = [sys.executable, "-I", "-B", "-c", _LAUNCHER, *map(str, numbers), str(plan.uid), str(plan.gid)]
    command += [plan.python, *program]
    # --kill-child: if unshare dies (our kill on timeout), the program's init dies, and with it the namespace.
    return [plan.unshare, *_UNSHARE, *command] if plan.unshare else command


@functools.cache
def _isolation_plan() -> _Isolation:
    """Full isolation where a trial program runs under it (root, namespaces allowed, an interpreter ``nobody`` may
    run: ours, else the system's ``python3``, since ours may live in a folder only root can enter); else basic."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return _Isolation(None)
    try:
        nobody = pwd.getpwnam(_NOBODY)
    except KeyError:
        return _Isolation(None)
    for python in dict.fromkeys(
        filter(None, [os.path.realpath(sys.executable), shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")])
    ):
        plan = _Isolation(unshare, nobody.pw_uid, nobody.pw_gid, python)
        with tempfile.TemporaryDirectory(prefix="selfanchor-sandbox-") as folder:
            Path(folder, "program.py").write_text("pass\n", encoding="utf-8")
            try:
                trial = subprocess.run(
                    _launcher(plan, SandboxLimits(timeout_s=20), "program.py"),
                    cwd=folder,
                    capture_output=True,
                    timeout=30,
                    env={},
                )
            except (OSError, subprocess.SubprocessError):
                continue
        if trial.returncode == 0:
            return plan
    return _Isolation(None)


def isolation() -> tuple[str, ...]:
    """The isolation this machine gives a program, for logs and reports.

    Always ``subprocess``, ``rlimits``, ``process-group``, ``temp-dir`` and ``empty-env``; as root where the
    kernel allows namespaces, also ``net-namespace``, ``pid-namespace``, ``mount-namespace`` and ``user-nobody``.
    Without ``net-namespace`` the program can reach whatever network the machine can, and write wherever our user
    can.
    """
    basic = ("subprocess", "rlimits", "process-group", "temp-dir", "empty-env")
    full = ("net-namespace", "pid-namespace", "mount-namespace", "user-nobody")
    return basic + full if _isolation_plan().unshare else basic


def _error_kind(returncode: int, stderr: str) -> str | None:
    if returncode == 0:
        return None
    if returncode < 0 or returncode in (128 + signal.SIGKILL, 128 + signal.SIGXCPU):
        return "killed"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if last.startswith("AssertionError"):
        return "assertion"
    if last.startswith(("SyntaxError", "IndentationError", "TabError")):
        return "syntax"
    if last.startswith("MemoryError"):
        return "memory"
    return "error"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


def run_program(source: str, limits: SandboxLimits | None = None) -> ExecutionResult:
    """Run ``source`` as a Python program in the sandbox and wait for it (at most ``limits.timeout_s``).

    Args:
        source: The whole program (solution and tests); it passes when it exits with status 0.
        limits: Resource limits; :class:`SandboxLimits` defaults when None.

    Returns:
        The verdict, its error kind and the start of the program's output.

    Raises:
        TypeError: ``source`` is not a string.
        ValueError: ``source`` holds a NUL character (no file can hold it as a program).
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    if "\x00" in source:
        raise ValueError(f"source holds a NUL character at index {source.index(chr(0))}")
    limits = limits or SandboxLimits()
    plan = _isolation_plan()
    workdir = Path(tempfile.mkdtemp(prefix="selfanchor-sandbox-"))
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8", errors="surrogatepass")
        # Output goes to files in the folder (capped by the file-size limit), not pipes: a program that prints
        # without end cannot fill our memory.
        with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
            process = subprocess.Popen(
                _launcher(plan, limits, "program.py"),
                cwd=workdir,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, so a timeout kills all it started
            )
            try:
                returncode: int | None = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                _kill_group(process)  # on timeout the program; else whatever it left running in its group
                process.wait()
        stdout, stderr = _head(workdir / "stdout"), _tail(workdir / "stderr")
        if returncode is None:
            return _result(False, "timeout", None, stdout, stderr)
        kind = _error_kind(returncode, stderr)
        return _result(kind is None, kind, returncode, stdout, stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _head(path: Path) -> str:
    with path.open("rb") as fh:
        return fh.read(_OUTPUT_CHARS).decode("utf-8", "replace")


def _tail(path: Path) -> str:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - _OUTPUT_CHARS))
        return fh.read().decode("utf-8", "replace")


def _result(passed: bool, error: str | None, returncode: int | None, stdout: str, stderr: str) -> ExecutionResult:
    return ExecutionResult(
        passed=passed, error=error, returncode=returncode, stdout=stdout, stderr=stderr, isolation=isolation()
    )
