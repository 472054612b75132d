"""Build and install llama-cpp-python with position gaps allowed, for the llama.cpp steering backend.

    python scripts/llamacpp_build.py               # into the running interpreter's environment
    python scripts/llamacpp_build.py --force       # rebuild even if the gap-allowing build is installed
    python scripts/llamacpp_build.py --wheel-only  # only build the wheel, into <environment>/llamacpp-wheel

`make setup` compiles with ``--wheel-only`` while pip installs everything else (the compile wants the CPU, pip mostly
waits on downloads and disk), then runs the script plainly: a wheel already built there is installed, not rebuilt.

Why a build of our own: the masked branch of steered decoding is a second llama.cpp sequence that holds the prompt
minus the anchor tokens, each at its ORIGINAL position (anchors hidden, positions kept). Since mid-2025 llama.cpp's
batch check rejects a sequence whose next position is not the last one plus one ("it is required that the sequence
positions remain consecutive: Y = X + 1") and a batch whose positions for one sequence have a hole. The attention
itself handles gaps (its mask compares cell positions; RoPE reads absolute positions), so the patch turns those
two checks into "positions must increase" (what llama.cpp already allows for M-RoPE models). Nothing else changes:
the same kernels, the same GGUF files. The build is version ``0.3.36+gaps`` (it satisfies ``==0.3.36``), and the
engine checks for it (:func:`selfanchor_chains.engine.llamacpp_model.gaps_supported`).

The build is portable: ``GGML_NATIVE=OFF`` compiles for AVX2/FMA/F16C CPUs (no AVX-512), so a machine that moves
to another CPU of this decade keeps working; a native build could crash with an illegal instruction there.
It leaves out llama.cpp's ``common`` library (JSON, chat templates, an HTTP client: the tools' helpers), which
llama-cpp-python's CMakeLists forces on but the Python package never loads; libllama and libggml come out the same.
About 110 s on 2 idle cores (250 s with ``common``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

VERSION = "0.3.36"
LOCAL = "gaps"
# The sdist the patch was written against (PyPI's llama_cpp_python-0.3.36.tar.gz); another file is refused.
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
CMAKE_ARGS = " ".join(
    [
        "-DGGML_NATIVE=OFF",
        "-DLLAVA_BUILD=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=OFF",
    ]
)

# llama-cpp-python's CMakeLists forces llama.cpp's `common` on; only llama.cpp's own tools and mtmd use it.
_COMMON = 'set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)'
_COMMON_NEW = 'set(LLAMA_BUILD_COMMON OFF CACHE BOOL "Build llama.cpp common library" FORCE)  # selfanchor: unused'

# The two checks, as llama.cpp at llama-cpp-python 0.3.36 writes them; the build stops if they are not found.
_CONSECUTIVE = "                if (seq_pos_min(s) != p0 + 1) {"
_CONSECUTIVE_NEW = "                if (seq_pos_min(s) <= p0) { // selfanchor: forward gaps allowed (positions kept)"
_CONTINUOUS = "            if (seq_pos_max(s) - seq_pos_min(s) + 1 > (int) seq_pos[s].size()) {"
_CONTINUOUS_NEW = "            if (false) { // selfanchor: holes allowed inside a batch (hidden anchors)"


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def patch_source(root: Path) -> None:
    """Relax the two position checks, skip `common`, mark the version; raises if the source is not the expected one."""
    cmake = root / "CMakeLists.txt"
    lists = cmake.read_text(encoding="utf-8")
    if lists.count(_COMMON) != 1:
        raise SystemExit(f"CMakeLists.txt of llama-cpp-python {VERSION} does not force {_COMMON!r}")
    cmake.write_text(lists.replace(_COMMON, _COMMON_NEW), encoding="utf-8")
    batch = root / "vendor" / "llama.cpp" / "src" / "llama-batch.cpp"
    text = batch.read_text(encoding="utf-8")
    for old, new in ((_CONSECUTIVE, _CONSECUTIVE_NEW), (_CONTINUOUS, _CONTINUOUS_NEW)):
        if text.count(old) != 1:
            raise SystemExit(f"llama-batch.cpp of llama-cpp-python {VERSION} does not hold the expected check {old!r}")
        text = text.replace(old, new)
    batch.write_text(text, encoding="utf-8")
    init = root / "llama_cpp" / "__init__.py"
    source = init.read_text(encoding="utf-8")
    old_version = f'__version__ = "{VERSION}"'
    if old_version not in source:
        raise SystemExit(f"llama_cpp/__init__.py does not set {old_version}")
    init.write_text(source.replace(old_version, f'__version__ = "{VERSION}+{LOCAL}"'), encoding="utf-8")


WHEEL_DIR = Path(sys.prefix) / "llamacpp-wheel"


def _built_wheel() -> Path | None:
    wheels = sorted(WHEEL_DIR.glob(f"llama_cpp_python-{VERSION}+{LOCAL}-*.whl"))
    return wheels[-1] if wheels else None


def build(force: bool, wheel_only: bool = False) -> int:
    if installed_version() == f"{VERSION}+{LOCAL}" and not force:
        print(f"llama-cpp-python {VERSION}+{LOCAL} is installed")
        return 0
    pip = [sys.executable, "-m", "pip"]
    wheel = None if force else _built_wheel()
    if wheel is not None:
        if not wheel_only:
            subprocess.run([*pip, "install", "-q", str(wheel)], check=True)  # with its dependencies
            print(f"installed {wheel.name} (built earlier)")
        return 0
    with tempfile.TemporaryDirectory(prefix="llamacpp-build-") as tmp:
        subprocess.run(
            [*pip, "download", "-q", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={VERSION}", "-d", tmp],
            check=True,
        )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise SystemExit(f"{sdist.name}: sha256 {digest} is not the pinned {SDIST_SHA256}; refusing to build it")
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        root = Path(tmp) / f"llama_cpp_python-{VERSION}"
        patch_source(root)
        env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        start = time.perf_counter()
        if wheel_only:
            # Built beside, then moved: only a complete wheel ever carries the name that is installed.
            partial = Path(tmp) / "wheel"
            subprocess.run(
                [*pip, "wheel", "-q", "--no-deps", "--no-cache-dir", str(root), "-w", str(partial)], check=True, env=env
            )
            (built,) = partial.glob("*.whl")
            WHEEL_DIR.mkdir(parents=True, exist_ok=True)
            staged = WHEEL_DIR / f"{built.name}.partial"  # copied first: the temporary folder may be another disk
            shutil.copyfile(built, staged)
            staged.replace(WHEEL_DIR / built.name)
            print(f"built {built.name} in {time.perf_counter() - start:.0f} s")
            return 0
        subprocess.run([*pip, "install", "-q", "--no-cache-dir", str(root)], check=True, env=env)
        print(f"built and installed llama-cpp-python {VERSION}+{LOCAL} in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the gap-allowing build is installed")
    parser.add_argument("--wheel-only", action="store_true", help=f"build the wheel into {WHEEL_DIR}, install nothing")
    args = parser.parse_args(argv)
    return build(args.force, args.wheel_only)


if __name__ == "__main__":
    raise SystemExit(main())
