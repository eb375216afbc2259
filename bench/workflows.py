"""The benchmark program with workflows: `bench_run.py --workflows` times runs of it.

`with_workflows(program, folder)` writes into `folder` a copy of the program with
messaging, a second coupon pool, `expiry.notify_before` and four workflows: the fashion
example's welcome series and win-back (with its templates), a reminder of points that
expire within 30 days (SMS, else email) and a welcome to gold with a 100-point award.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
FASHION = ROOT / "examples" / "programs" / "fashion"

EXPIRING = """\
version: 1
workflow:
  id: expiring
  trigger: points_expiring
  reentry: 30 days
  priority: 5
  steps:
    - id: reminder
      send: {channel: sms, template: winback-reminder, fallback: email}
"""

GOLD = """\
version: 1
workflow:
  id: gold
  trigger: {tier_up: {to: gold}}
  steps:
    - id: hello
      send: {channel: email, template: welcome}
    - award: {points: 100, reason: gold-welcome}
"""


def with_workflows(program: Path, folder: Path) -> Path:
    """Write the program with workflows into `folder`; returns the program file's path."""
    yaml = YAML()
    data = yaml.load(program.read_text())
    data["coupons"]["pools"].append(
        {
            "id": "winback-15",
            "source": "generate",
            "prefix": "WB15-",
            "length": 10,
            "count": 50000,
            "discount": {"percent": 15},
            "valid_days": 30,
        }
    )
    data["expiry"]["notify_before"] = "30 days"
    data["messaging"] = {
        "max_per_week": 3,
        "from_email": "club@fashion.example",
        "sms_sender": "FASHION",
        "default_region": "PL",
    }
    data["templates"] = "templates/"
    data["workflows"] = ["workflows/*.yaml"]
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(FASHION / "templates", folder / "templates")
    shutil.copytree(FASHION / "workflows", folder / "workflows")
    (folder / "workflows" / "expiring.yaml").write_text(EXPIRING)
    (folder / "workflows" / "gold.yaml").write_text(GOLD)
    target = folder / "program.yaml"
    with target.open("w") as fh:
        yaml.dump(data, fh)
    return target
