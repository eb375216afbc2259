"""Time `loyalty validate` on a repository of many programs.

Copies the six example programs (program, workflows, templates, coupon files) into a
temporary folder until there are N programs in total (default 200), each copy in its own
folder, then times ``validate_paths`` over all the program files in one call, the way CI
runs ``loyalty validate 'shops/*/program.yaml'``. Each program's workflows and templates
are checked through the program. Prints the number of files checked and the seconds taken.

Usage: python bench/bench_validate.py [--programs N] [--repeat R]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from loyalty_cli.config.validate import validate_paths

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "programs"


def make_tree(root: Path, programs: int) -> list[str]:
    """Copies of the examples under `root`, round robin; the program files, in order."""
    examples = sorted(p for p in EXAMPLES.iterdir() if (p / "program.yaml").is_file())
    paths = []
    for i in range(programs):
        example = examples[i % len(examples)]
        target = root / f"{example.name}-{i // len(examples) + 1:03d}"
        shutil.copytree(example, target)
        paths.append(str(target / "program.yaml"))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=200, help="program files in total")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is shown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        paths = make_tree(Path(tmp), args.programs)
        times = []
        report = None
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            report = validate_paths(paths)
            times.append(time.perf_counter() - start)
        assert report is not None
        programs = sum(1 for kind in report.kinds.values() if kind == "program")
        workflows = sum(1 for kind in report.kinds.values() if kind == "workflow")
        print(
            f"validate: {programs} programs + {workflows} workflows "
            f"({len(report.files)} files), {len(report.errors)} errors"
        )
        print(f"seconds: best {min(times):.2f}, runs " + ", ".join(f"{t:.2f}" for t in times))
        return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
