"""The sandbox that runs model-written code: hostile programs are contained and scored as failures, and the
evaluating process and the machine are unaffected (no file written outside, no process left, no secret read)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from selfanchor_chains.answers.sandbox import SandboxLimits, isolation, run_program

FAST = SandboxLimits(timeout_s=3.0)
FULL = "net-namespace" in isolation()
needs_full = pytest.mark.skipif(not FULL, reason="full isolation needs root and namespaces (unshare); not here")


def _sandbox_processes() -> list[str]:
    """Processes still running that a sandbox started (as nobody, or our launcher / unshare)."""
    out = subprocess.run(["ps", "-eo", "user:20,args"], capture_output=True, text=True, check=True).stdout
    return [
        line
        for line in out.splitlines()[1:]
        if line.startswith("nobody") or "selfanchor-sandbox" in line or "program.py" in line
    ]


def _no_process_left(grace_s: float = 10.0) -> bool:
    """No sandbox process is left once the machine's init has reaped the killed namespace (zombies of a killed
    PID namespace are reparented to it and reaped within moments)."""
    deadline = time.monotonic() + grace_s
    while _sandbox_processes():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_passing_program_passes_and_its_output_is_kept() -> None:
    result = run_program("assert sum([1, 2]) == 3\nprint('ok')", FAST)
    assert (result.passed, result.error, result.returncode) == (True, None, 0)
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("assert 1 == 2", "assertion"),
        ("def f(:\n    pass", "syntax"),
        ("raise ValueError('no')", "error"),
        ("import sys\nsys.exit(3)", "error"),
    ],
)
def test_failing_programs_fail_with_their_kind(source: str, kind: str) -> None:
    result = run_program(source, FAST)
    assert not result.passed
    assert result.error == kind


@pytest.mark.parametrize(
    "source",
    ["while True:\n    pass", "import time\ntime.sleep(60)"],
    ids=["busy-loop", "sleep"],
)
def test_a_program_that_never_ends_is_killed_at_the_timeout(source: str) -> None:
    start = time.monotonic()
    result = run_program(source, SandboxLimits(timeout_s=1.5))
    assert (result.passed, result.error, result.returncode) == (False, "timeout", None)
    assert time.monotonic() - start < 10
    assert _no_process_left()


def test_a_fork_bomb_is_contained_and_leaves_no_process() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_program(bomb, SandboxLimits(timeout_s=2.0))
    assert not result.passed
    assert _no_process_left()
    assert run_program("print(1)", FAST).passed  # the machine still starts processes


@pytest.mark.parametrize(
    "source",
    ["x = bytearray(64 * 1024**3)", "x = []\nwhile True:\n    x.append(bytearray(10**7))"],
    ids=["one-huge", "growing"],
)
def test_a_huge_allocation_fails_with_a_memory_error(source: str) -> None:
    result = run_program(source, SandboxLimits(timeout_s=10.0, memory_bytes=512 << 20))
    assert not result.passed
    assert result.error in ("memory", "killed")


def test_endless_output_cannot_fill_our_memory() -> None:
    result = run_program("while True:\n    print('x' * 1000)", SandboxLimits(timeout_s=5.0, file_bytes=1 << 20))
    assert not result.passed
    assert len(result.stdout) <= 2000


@needs_full
@pytest.mark.parametrize("where", ["tmp", "repository"])
def test_writing_outside_its_folder_fails(tmp_path: Path, where: str) -> None:
    # /tmp is hidden under a read-only tmpfs (the file's folder is not found); elsewhere nobody may not write.
    folder = tmp_path if where == "tmp" else Path(__file__).resolve().parent
    target = folder / "written-by-sandbox"
    result = run_program(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert not result.passed and result.error == "error"
    assert "PermissionError" in result.stderr or "FileNotFoundError" in result.stderr
    assert not target.exists()


@needs_full
def test_os_system_cannot_touch_the_machine(tmp_path: Path) -> None:
    target = tmp_path / "touched"
    result = run_program(f"import os\nassert os.system('touch {target}') == 0\n", FAST)
    assert not result.passed
    assert not target.exists()


@needs_full
def test_no_network() -> None:
    source = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n"
    result = run_program(source, FAST)
    assert not result.passed
    assert "OSError" in result.stderr or "unreachable" in result.stderr


def test_our_environment_secrets_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFANCHOR_TEST_SECRET_TOKEN", "s3cr3t")
    source = (
        "import os\n"
        "assert 's3cr3t' not in repr(os.environ), 'secret leaked'\n"
        "assert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LC_CTYPE'}, sorted(os.environ)\n"
    )
    assert run_program(source, FAST).passed


def test_nothing_is_imported_into_our_process() -> None:
    marker = "selfanchor_sandbox_marker_module"
    run_program(f"import sys\nsys.modules[{marker!r}] = sys\nopen('x.py', 'w').write('y = 1')", FAST)
    import sys

    assert marker not in sys.modules
    assert os.getcwd() == os.getcwd()  # our working folder was not changed


def test_the_work_folder_is_removed() -> None:
    before = {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("selfanchor-sandbox-*")}
    run_program("open('big.txt', 'w').write('x' * 1000)", FAST)
    after = {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("selfanchor-sandbox-*")}
    assert after <= before


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(TypeError, match="source must be a str"):
        run_program(b"print(1)")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL character at index 5"):
        run_program("print\x00(1)")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        SandboxLimits(timeout_s=0)
