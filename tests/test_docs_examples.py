"""What the README and docs/ show is what the tool does.

- every relative link between the pages resolves, anchors included;
- the workflow examples of docs/workflows.md and the complete program of docs/program.md
  validate without errors next to a program that defines what they name;
- the diagnostic codes docs/diagnostics.md lists are the codes the tool has;
- the output files of docs/run.md are written with the columns its table names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from enginekit import Shop, customer, order

from loyalty_cli.config.validate import validate_paths
from loyalty_cli.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _yaml_blocks(page: Path, top_key: str) -> list[str]:
    """The ```yaml blocks of a page that are whole files with `top_key:` at the top."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S)
    return [b for b in blocks if re.search(rf"^{top_key}:", b, re.M) and "version: 1" in b]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_between_pages_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):
            continue  # https: and mailto: links are not checked here
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", target.read_text(encoding="utf-8"), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(link)
    assert broken == []


# A program that defines everything the workflow examples of docs/workflows.md name: the
# churn segment with its `high` group, gold and silver tiers, the pools winback-25 and
# welcome-10, and the templates winback, winback-reminder, welcome, first-order-nudge and
# points-expiring.
HOST_PROGRAM = """\
version: 1
program: {id: docs, name: Docs, currency: PLN, timezone: Europe/Warsaw, point_value: 0.01}
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
earning:
  rules:
    - {id: base, on: order, points: order.total}
expiry: {after: 365 days, notify_before: 30 days}
tiers:
  basis: spend
  window: 365 days
  retain: 365 days
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: silver, name: Silver, min: 1000, multiplier: 1.25}
    - {id: gold, name: Gold, min: 5000, multiplier: 1.5}
segments:
  - {id: churn, type: churn, model: interval, levels: {low: 0, medium: 1.5, high: 3}}
coupons:
  pools:
    - {id: winback-25, source: generate, prefix: WB25-, length: 10, count: 100,
       discount: {percent: 25}, valid_days: 30}
    - {id: welcome-10, source: generate, prefix: W10-, length: 10, count: 100,
       discount: {percent: 10}, valid_days: 30}
messaging: {max_per_week: 3, from_email: club@shop.example, sms_sender: SHOP,
            default_region: PL}
templates: templates/
workflows: ["workflows/*.yaml"]
"""


def _errors(paths: list[Path]) -> list[str]:
    report = validate_paths([str(p) for p in paths])
    return [f"{d.path}:{d.line}: {d.code} {d.message}" for d in report.diagnostics if d.is_error]


def test_workflow_examples_validate(tmp_path: Path) -> None:
    blocks = _yaml_blocks(DOCS / "workflows.md", "workflow")
    assert len(blocks) >= 3  # the example at the top and the two under "More examples"
    (tmp_path / "workflows").mkdir()
    templates = tmp_path / "templates"
    templates.mkdir()
    for name in ("winback", "welcome", "first-order-nudge", "points-expiring"):
        (templates / f"{name}.subject.j2").write_text("Hello {{ customer.first_name }}")
        (templates / f"{name}.html.j2").write_text("<p>{{ balance }} points</p>")
        (templates / f"{name}.txt.j2").write_text("{{ balance }} points")
    for name in ("winback", "winback-reminder", "points-expiring"):
        (templates / f"{name}.sms.j2").write_text("{{ balance }} points")
    for n, block in enumerate(blocks):
        (tmp_path / "workflows" / f"example-{n}.yaml").write_text(block)
    program = tmp_path / "program.yaml"
    program.write_text(HOST_PROGRAM)
    assert _errors([program]) == []


def test_complete_program_example_validates(tmp_path: Path) -> None:
    (block,) = _yaml_blocks(DOCS / "program.md", "program")
    (tmp_path / "program.yaml").write_text(block)
    # What the example names beside itself: its file coupon pool and a workflow.
    (tmp_path / "coupons").mkdir()
    (tmp_path / "coupons" / "reward20.csv").write_text("code\nR20-AAAA\n")
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "award.yaml").write_text(
        "version: 1\nworkflow:\n  id: thanks\n  trigger: joined\n"
        "  steps:\n    - award: {points: 10, reason: thanks}\n"
    )
    assert _errors([tmp_path / "program.yaml"]) == []


def test_documented_codes_are_the_tools_codes() -> None:
    text = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([YSRETD]\d{3})` \|", text, re.M)
    assert sorted(listed) == sorted(CODES)


def _output_columns() -> dict[str, list[str]]:
    """docs/run.md's table of out/D/ files: file name -> the columns it lists."""
    text = (DOCS / "run.md").read_text(encoding="utf-8")
    section = text.split("## Output files (`out/D/`)", 1)[1].split("\n## ", 1)[0]
    columns = {}
    for name, cells in re.findall(r"^\| ([a-z_]+\.csv) \| ([^|]*)\|", section, re.M):
        listed = re.sub(r"\s*\([^)]*\)", "", cells.split(":")[0].split(";")[0])
        columns[name] = [c.strip() for c in listed.split(",")]
    return columns


def test_output_files_have_the_documented_columns(tmp_path: Path) -> None:
    documented = _output_columns()
    assert set(documented) == {
        "balances.csv",
        "ledger.csv",
        "tier_changes.csv",
        "segments.csv",
        "redemptions.csv",
        "rejects.csv",
    }
    shop = Shop(
        tmp_path,
        """\
earning:
  rules:
    - {id: base, on: order, points: order.total}
""",
    )
    shop.add("customers", customer("C1"))
    shop.add("orders", order("O1", "C1", "2026-03-01 10:00:00", "12.00"))
    shop.run("2026-03-02")
    for name, columns in documented.items():
        header = (shop.out / "2026-03-02" / name).read_text().splitlines()[0]
        assert header.split(",") == columns, name
