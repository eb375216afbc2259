"""CDNOW through a whole `loyalty run`: run.json carries the published BG/NBD and Gamma-Gamma fits.

The CDNOW sample (tests/data/cdnow/, 2,357 customers of 1997-01 to 1998-06) becomes a
customers export and an orders export; the run for 1997-09-30 holds back every later order,
so the fit covers the 39-week calibration period of Fader, Hardie and Lee (2005). Time is in
days: alpha is the published 4.414 weeks x 7.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from loyalty_cli.engine.run import run

CDNOW = Path(__file__).parent / "data" / "cdnow" / "CDNOW_sample.txt"

PROGRAM = """\
version: 1
program: {id: cdnow, name: CDNOW, currency: USD, timezone: UTC}
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
earning:
  rules:
    - {id: base, on: order, points: order.total}
segments:
  - {id: value, type: clv, horizon: 365 days, top_share: 0.1}
"""


def write_exports(data: Path) -> None:
    rows = []
    for n, line in enumerate(CDNOW.read_text().splitlines()):
        cid, _, day, _, amount = line.split()
        rows.append((cid, f"{day[:4]}-{day[4:6]}-{day[6:]}", amount, n))
    first: dict[str, str] = {}
    for cid, day, _, _ in rows:
        first[cid] = min(first.get(cid, day), day)
    with (data / "customers.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["customer_id", "joined_at"])
        for cid, day in sorted(first.items()):
            w.writerow([cid, f"{day} 00:00:00"])
    with (data / "orders.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["order_id", "customer_id", "ordered_at", "total"])
        for cid, day, amount, n in rows:
            w.writerow([f"T{n}", cid, f"{day} 12:00:00", amount])


def test_cdnow_fit_in_run_json(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_exports(data)
    (tmp_path / "program.yaml").write_text(PROGRAM)
    (result,) = run(
        tmp_path / "program.yaml",
        data,
        dt.date(1997, 9, 30),
        tmp_path / "s.duckdb",
        tmp_path / "out",
    )
    models = json.loads((tmp_path / "out" / "1997-09-30" / "run.json").read_text())["models"]
    fit = models["value"]
    assert fit["model"] == "bgnbd"
    published = {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert abs(fit["params"][name] - value) / value < 0.01, (name, fit["params"][name])
    spend = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in spend.items():
        assert abs(fit["spend"][name] - value) / value < 0.02, (name, fit["spend"][name])
    assert fit["loglik"] < 0
    assert result.counts["segments"] == {"value.top": 236, "value.rest": 2121}
