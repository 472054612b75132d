"""What the resumable study scripts (code_study.py, rag_real_study.py) share: running one `selfanchor eval` stage,
reading its per-item log, and moving the logs between evals/ (not committed) and results/<study>/logs/ (committed,
gzipped) so a fresh checkout resumes where the last one stopped."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def run_eval(arguments: Sequence[str]) -> None:
    """``selfanchor eval ARGUMENTS`` with this interpreter's entry point, offline; raises if it fails."""
    command = [str(Path(sys.executable).with_name("selfanchor")), "eval", *arguments]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """A per-item log by item id (empty when the file is missing)."""
    if not path.is_file():
        return {}
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {str(r["id"]): r for r in lines}


def restore_logs(folders: Mapping[str, Path], committed: Path) -> None:
    """Committed logs (``committed/KEY/*.jsonl.gz``) back into ``folders[KEY]`` where a log is missing or shorter."""
    for key, folder in folders.items():
        for packed in sorted((committed / key).glob("*.jsonl.gz")):
            target = folder / packed.name.removesuffix(".gz")
            with gzip.open(packed, "rt", encoding="utf-8") as fh:
                text = fh.read()
            if not target.is_file() or target.read_text(encoding="utf-8").count("\n") < text.count("\n"):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                print(f"restored {target} ({text.count(chr(10))} items)", flush=True)


def snapshot_logs(folders: Mapping[str, Path], committed: Path, drop: Sequence[str] = ()) -> None:
    """The logs so far, gzipped (reproducibly: no time stamp) under ``committed/KEY/``, without the ``drop`` keys."""
    for key, folder in folders.items():
        for path in sorted(folder.glob("*.jsonl")):
            target = committed / key / (path.name + ".gz")
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text(encoding="utf-8")
            if drop:
                rows = (json.loads(line) for line in text.splitlines() if line.strip())
                text = "".join(json.dumps({k: v for k, v in r.items() if k not in drop}) + "\n" for r in rows)
            with gzip.GzipFile(target, "wb", mtime=0) as dst:
                dst.write(text.encode("utf-8"))
