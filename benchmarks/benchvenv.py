"""The benchmark's own virtualenv (`benchmarks/.venv-proxlb`, gitignored): ProxLB 2.3.0 from
PyPI (which brings OR-Tools through proxlb-solver, used for the lower bound) and matplotlib
for the plots. Nothing here is a project dependency; the product never imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-proxlb"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ("proxlb==2.3.0", "matplotlib>=3.8")
MARKER = VENV / ".bench-requirements.json"


def ready() -> bool:
    try:
        return PYTHON.exists() and json.loads(MARKER.read_text()) == list(REQUIREMENTS)
    except (OSError, ValueError):
        return False


def ensure(log: Path | None = None) -> Path | None:
    """Create/update the venv when needed; returns its python, or None if that failed
    (no network, no PyPI): the run then goes on without ProxLB, plots and lower bound."""
    if ready():
        return PYTHON
    print(f"benchmark venv: installing {', '.join(REQUIREMENTS)} into {VENV} ...", flush=True)
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        if not PYTHON.exists():
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(VENV)], check=True, stdout=out,
                           stderr=out)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
                       check=True, stdout=out, stderr=out, env=env, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"benchmark venv: install failed ({exc}); ProxLB, plots and the lower bound "
              "are skipped", flush=True)
        return None
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    MARKER.write_text(json.dumps(list(REQUIREMENTS)))
    return PYTHON


def package_version(name: str) -> str:
    """A package's version inside the benchmark venv ("" if unknown)."""
    if not PYTHON.exists():
        return ""
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    result = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True)
    return result.stdout.strip()
