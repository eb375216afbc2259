"""`loyalty coupons status | generate | import` on a small program and state."""

from __future__ import annotations

import json

from enginekit import Shop, customer
from typer.testing import CliRunner

from loyalty_cli.cli import app

POOLS = """
earning:
  rules:
    - {id: base, on: order, points: order.total}
coupons:
  pools:
    - {id: gen, source: generate, prefix: "G-", length: 6, count: 50}
    - {id: partner, source: file, path: partner.csv}
"""


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def make(tmp_path) -> Shop:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "partner.csv").write_text("code\nP1\n")
    shop = Shop(tmp_path, POOLS)
    shop.add("customers", customer("A", "2026-01-01 10:00:00"))
    return shop


def status(shop: Shop, *extra: str) -> dict[str, dict]:
    res = cli(
        "coupons", "status", str(shop.program), "--state", str(shop.state), "-f", "json", *extra
    )
    assert res.exit_code == 0, res.output
    return {r["pool"]: r for r in json.loads(res.output)}


def test_status_generate_and_import(tmp_path):
    shop = make(tmp_path)
    # No state yet: nothing stored, the generate pool's count still to come.
    before = status(shop)
    assert [(r["total"], r["free"], r["to_generate"]) for r in before.values()] == [
        (0, 0, 50),
        (0, 0, 0),
    ]
    res = cli(
        "coupons", "generate", str(shop.program), "gen", "--count", "7", "--state", str(shop.state)
    )
    assert res.exit_code == 0, res.output
    assert "pool gen: generated 7 code(s); 7 stored, 7 free" in res.output
    codes = shop.query("SELECT code FROM coupon_codes WHERE pool_id = 'gen' ORDER BY seq")
    assert len(codes) == 7 and all(c[0].startswith("G-") and len(c[0]) == 8 for c in codes)

    extra = tmp_path / "more.csv"
    extra.write_text("code,valid_until\nP1,\nP2,2026-02-01\nP3,\n")
    res = cli(
        "coupons", "import", str(shop.program), "partner", str(extra), "--state", str(shop.state)
    )
    assert res.exit_code == 0, res.output
    assert "pool partner: imported 3 new code(s); 3 stored, 3 free" in res.output
    # Importing the same file again adds nothing.
    res = cli(
        "coupons", "import", str(shop.program), "partner", str(extra), "--state", str(shop.state)
    )
    assert "imported 0 new code(s); 3 stored, 3 free" in res.output
    after = status(shop, "--as-of", "2026-03-01")
    assert (after["gen"]["total"], after["gen"]["free"], after["gen"]["to_generate"]) == (7, 7, 0)
    # P2 is past its valid_until on 2026-03-01.
    assert (after["partner"]["total"], after["partner"]["free"], after["partner"]["expired"]) == (
        3,
        2,
        1,
    )
    # The run that needs codes reads the pool's own file too: P1 is there already.
    shop.run("2026-03-01")
    assert status(shop)["partner"]["total"] == 3


def test_bad_requests_are_refused_and_change_nothing(tmp_path):
    shop = make(tmp_path)
    shop.run("2026-03-01")
    state = str(shop.state)
    bad = tmp_path / "bad.csv"
    bad.write_text("code,valid_until\nQ1,\nQ2,tomorrow\n")
    res = cli("coupons", "import", str(shop.program), "partner", str(bad), "--state", state)
    assert res.exit_code == 1
    assert f"{bad}:3" in res.output and "valid_until 'tomorrow' is not a date" in res.output
    assert shop.query("SELECT count(*) FROM coupon_codes") == [(0,)]

    res = cli("coupons", "import", str(shop.program), "nope", str(bad), "--state", state)
    assert res.exit_code == 2 and "unknown coupon pool 'nope'" in res.output
    res = cli("coupons", "generate", str(shop.program), "partner", "--state", state)
    assert res.exit_code == 2 and "takes its codes from a file" in res.output

    # Another program's state is refused.
    other = make(tmp_path / "other")
    other.program.write_text(other.program.read_text().replace("test-club", "other-club"))
    res = cli("coupons", "generate", str(other.program), "gen", "--state", state)
    assert res.exit_code == 3 and "D609" in res.output
    assert shop.query("SELECT count(*) FROM coupon_codes") == [(0,)]


def test_status_counts_codes_as_the_next_run_finds_them(tmp_path):
    shop = make(tmp_path)
    more = tmp_path / "more.csv"
    more.write_text("code,valid_until\nP2,2026-03-01\nP3,2026-03-02\nP4,\n")
    state = str(shop.state)
    res = cli("coupons", "import", str(shop.program), "partner", str(more), "--state", state)
    assert res.exit_code == 0, res.output
    # No run yet: no day to judge by, so the three imported codes are free.
    assert (status(shop)["partner"]["free"], status(shop)["partner"]["expired"]) == (3, 0)
    shop.run("2026-03-01")
    # The next run is for 2026-03-02: P2 (valid until 03-01) is dead; P3 and P4 are free.
    after = status(shop)["partner"]
    assert (after["total"], after["free"], after["expired"]) == (3, 2, 1)
    # --as-of still decides when given: on 2026-03-01 P2 is valid.
    assert status(shop, "--as-of", "2026-03-01")["partner"]["expired"] == 0
