"""`make bench`: every benchmark, one after the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script, *args in (
    ("bench_run.py",),
    ("bench_run.py", "--workflows"),
    ("bench_floor.py",),
    ("bench_models.py",),
    ("bench_segments.py",),
    ("bench_validate.py",),
    ("check_shards.py",),
    ("check_formats.py",),
):
    if (HERE / script).exists():
        print(f"== {' '.join([script, *args])}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)
