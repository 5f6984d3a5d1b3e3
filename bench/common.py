"""What the bench scripts share: running the laurelc binary."""

from __future__ import annotations

import subprocess
from pathlib import Path


def laurelc(binary: Path, *args) -> str:
    """Runs `binary args…` and returns its stdout; exits with its stderr when it fails."""
    res = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"laurelc {' '.join(map(str, args))} exited {res.returncode}:\n{res.stderr}")
    return res.stdout
