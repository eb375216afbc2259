"""Checks beyond the schema: ids, references, tiers, durations, expressions and templates.

Run only on documents that passed the schema, so the shapes here can be trusted.
"""

from __future__ import annotations

import datetime as dt
import glob
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from loyalty_cli import expr as expressions
from loyalty_cli.config.durations import (
    DURATION_HINT,
    MAX_DURATION_TEXT,
    parse_duration,
    too_long,
)
from loyalty_cli.config.yamlload import PathKey, YamlDoc, format_path
from loyalty_cli.diagnostics import Diagnostic


@dataclass
class ProgramContext:
    """What a workflow may refer to in its program."""

    path: Path
    data: dict
    tiers: list[str] = field(default_factory=list)
    pools: set[str] = field(default_factory=set)
    rewards: set[str] = field(default_factory=set)
    segments: dict[str, set[str]] = field(default_factory=dict)  # id -> groups
    has_rfm: bool = False
    extras: dict[str, dict[str, str]] = field(default_factory=dict)
    template_dir: Path | None = None

    @classmethod
    def from_program(cls, path: Path, data: dict) -> ProgramContext:
        tiers = [lvl.get("id") for lvl in (data.get("tiers") or {}).get("levels") or []]
        pools = {p.get("id") for p in (data.get("coupons") or {}).get("pools") or []}
        rewards = {r.get("id") for r in data.get("rewards") or []}
        segments: dict[str, set[str]] = {}
        has_rfm = False
        for seg in data.get("segments") or []:
            kind = seg.get("type")
            if kind == "rfm":
                has_rfm = True
                segments[seg["id"]] = set((seg.get("groups") or {}).keys())
            elif kind == "churn":
                segments[seg["id"]] = set((seg.get("levels") or {}).keys())
            elif kind == "clv":
                segments[seg["id"]] = {"top", "rest"}
            else:
                segments[seg["id"]] = {seg["id"]}
        extras = {
            name: dict((src or {}).get("extra") or {})
            for name, src in (data.get("sources") or {}).items()
        }
        folder = str(data.get("templates") or "templates/")
        # A folder outside the program's (reported, R306) is not read: no template check.
        template_dir = path.parent / folder if _inside_folder(folder) else None
        # A program with schema errors still gives its workflows what it can: ids that are
        # text (a number or a list where an id belongs is the program's error, reported).
        return cls(
            path=path,
            data=data,
            tiers=[t for t in tiers if t and isinstance(t, str)],
            pools={p for p in pools if p and isinstance(p, str)},
            rewards={r for r in rewards if r and isinstance(r, str)},
            segments={k: v for k, v in segments.items() if k and isinstance(k, str)},
            has_rfm=has_rfm,
            extras=extras,
            template_dir=template_dir,
        )


class Checker:
    """Collects diagnostics for one document."""

    def __init__(self, doc: YamlDoc):
        self.doc = doc
        self.out: list[Diagnostic] = []

    def add(
        self,
        code: str,
        path: PathKey,
        message: str,
        hint: str = "",
        *,
        at_key: bool = False,
        severity: str = "error",
    ) -> None:
        pos = self.doc.key_pos(path) if at_key else self.doc.pos(path)
        self.out.append(
            Diagnostic(
                code=code,
                path=self.doc.path,
                line=pos.line if pos else None,
                col=pos.col if pos else None,
                message=message,
                hint=hint,
                where=format_path(path),
                severity=severity,
            )
        )

    def unique_ids(self, items: Iterable[tuple[PathKey, Any]], what: str) -> None:
        seen: dict[str, PathKey] = {}
        for path, value in items:
            if not isinstance(value, str):
                continue
            if value in seen:
                first = self.doc.pos(seen[value])
                where = f" (first used on line {first.line})" if first else ""
                self.add(
                    "R301",
                    path,
                    f"duplicate {what} id '{value}'{where}",
                    f"Each {what} needs its own id; rename one of them.",
                )
            else:
                seen[value] = path

    def duration(self, path: PathKey, value: Any, *, at_least_a_day: bool = False) -> None:
        if value is None:
            return
        parsed = parse_duration(value)
        if parsed is None:
            self.add(
                "R304", path, f"malformed duration {value!r} at {format_path(path)}", DURATION_HINT
            )
        elif too_long(parsed):
            self.add(
                "S205",
                path,
                f"{format_path(path)}: duration {value!r} is longer than 100 years",
                f"A duration is at most {MAX_DURATION_TEXT}.",
            )
        elif at_least_a_day and parsed.n == 0:
            self.add(
                "S205",
                path,
                f"{format_path(path)}: duration {value!r} is shorter than a day",
                "A wait is at least '1 day': a step's wait ends on a later run. Remove the "
                "step to go on at once.",
            )

    def calendar_date(self, path: PathKey, value: Any) -> None:
        """A YYYY-MM-DD text must name a day of the calendar (not 2026-02-30)."""
        if not isinstance(value, str):
            return
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            self.add(
                "S205",
                path,
                f"{format_path(path)}: {value!r} is not a day of the calendar",
                "Write a real date as YYYY-MM-DD, e.g. '2026-02-28' (months have 28 to 31 days).",
            )

    def expression(
        self, path: PathKey, value: Any, ctx: expressions.ExprContext, kind: str
    ) -> expressions.CheckedExpr | None:
        if value is None:
            return None
        checked = _check_cached(value, ctx, kind)
        for prob in checked.problems:
            line, col = self.doc.expression_pos(path, prob.line, prob.col)
            self.out.append(
                Diagnostic(
                    code=prob.code,
                    path=self.doc.path,
                    line=line,
                    col=col,
                    message=f"{format_path(path)}: {prob.message}",
                    hint=prob.hint,
                    where=format_path(path),
                )
            )
        return checked

    def tier_literals(self, path: PathKey, value: Any, tiers: list[str] | None) -> None:
        """String literals compared with `tier` must name a tier level (in a program without
        tiers, `tier` is always empty and no literal can). `tiers` is None for a workflow
        checked without its program: its tier names are checked with the program."""
        if not isinstance(value, str) or tiers is None:
            return
        for literal in _tier_literals(value):
            if literal not in tiers:
                at = value.find(f"'{literal}'")
                line, col = self.doc.offset_pos(path, max(at, 0))
                self.out.append(
                    Diagnostic(
                        code="R302",
                        path=self.doc.path,
                        line=line,
                        col=col,
                        message=f"{format_path(path)}: tier '{literal}' is not a tier level",
                        hint=f"Tier levels are: {', '.join(tiers)}."
                        if tiers
                        else "The program has no tiers, so `tier` is always empty.",
                        where=format_path(path),
                    )
                )


def _check_cached(value: Any, ctx: expressions.ExprContext, kind: str) -> expressions.CheckedExpr:
    """check_expression, remembered: many programs repeat the same expressions."""
    return expressions.check_expression_cached(value, ctx, kind=kind)


def _tier_literals(text: str) -> list[str]:
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except Exception:  # noqa: BLE001 - syntax is reported by the expression checker
        return []
    found: list[str] = []

    def is_tier(node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and not node.table and node.name == "tier"

    for node in tree.walk():
        if isinstance(node, (exp.EQ, exp.NEQ)):
            left, right = node.this, node.expression
            for a, b in ((left, right), (right, left)):
                if is_tier(a) and isinstance(b, exp.Literal) and b.is_string:
                    found.append(b.this)
        elif isinstance(node, exp.In) and is_tier(node.this):
            for item in node.expressions:
                if isinstance(item, exp.Literal) and item.is_string:
                    found.append(item.this)
    return found


def _score_never(text: Any, scores: int) -> str | None:
    """The comparison of r, f or m with a number that makes an rfm group condition always
    false for scores 1..`scores` (one of the conditions joined by `and`), or None."""
    if not isinstance(text, str):
        return None
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except Exception:  # noqa: BLE001 - syntax is reported by the expression checker
        return None
    while isinstance(tree, exp.Paren):
        tree = tree.this
    parts = list(tree.flatten()) if isinstance(tree, exp.And) else [tree]
    flipped = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE, exp.EQ: exp.EQ}
    for part in parts:
        while isinstance(part, exp.Paren):
            part = part.this
        kind = type(part)
        if kind not in flipped:
            continue
        left, right = part.this, part.expression
        if not _is_score(left):
            left, right, kind = right, left, flipped[kind]
        if not _is_score(left) or not (isinstance(right, exp.Literal) and right.is_number):
            continue
        k = float(right.this)
        never = {
            exp.GT: k >= scores,
            exp.GTE: k > scores,
            exp.LT: k <= 1,
            exp.LTE: k < 1,
            exp.EQ: k != int(k) or not 1 <= k <= scores,
        }[kind]
        if never:
            return f"`{part.sql(dialect='duckdb')}` is never true"
    return None


def _is_score(node: exp.Expression) -> bool:
    return isinstance(node, exp.Column) and not node.table and node.name in ("r", "f", "m")


def _inside_folder(value: str) -> bool:
    """A relative path that stays in its folder (no absolute path, no '..')."""
    p = Path(value)
    return not p.is_absolute() and ".." not in p.parts


def _source_path_ok(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    p = Path(value)
    return not p.is_absolute() and ".." not in p.parts


def check_program(doc: YamlDoc) -> tuple[list[Diagnostic], ProgramContext]:
    """Semantic checks of a program that passed the schema."""
    data = doc.data
    c = Checker(doc)
    path = Path(doc.path)
    pctx = ProgramContext.from_program(path, data)

    prog = data.get("program") or {}
    tz = prog.get("timezone")
    if isinstance(tz, str):
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            c.add(
                "R307",
                ("program", "timezone"),
                f"unknown timezone '{tz}'",
                "Use an IANA name such as 'Europe/Warsaw' or 'UTC'.",
            )

    c.calendar_date(("program", "starts_on"), prog.get("starts_on"))

    templates = data.get("templates")
    if isinstance(templates, str) and not _inside_folder(templates):
        c.add(
            "R306",
            ("templates",),
            f"templates folder {templates!r} leaves the program's folder",
            "Templates are kept with the program: write a folder relative to the program "
            "file without '..', such as 'templates/'.",
        )

    for name, src in (data.get("sources") or {}).items():
        if isinstance(src, dict) and not _source_path_ok(src.get("path")):
            c.add(
                "R306",
                ("sources", name, "path"),
                f"sources.{name}.path {src.get('path')!r} must be a path inside the --data folder",
                "Write a relative path without '..', such as 'orders/*.csv'.",
            )

    rules = (data.get("earning") or {}).get("rules") or []
    bonuses = data.get("bonuses") or []
    c.unique_ids(
        [(("earning", "rules", i, "id"), r.get("id")) for i, r in enumerate(rules)]
        + [(("bonuses", i, "id"), b.get("id")) for i, b in enumerate(bonuses)],
        "rule or bonus",
    )
    sources = data.get("sources") or {}
    for i, item in enumerate(rules):
        _rows_never_come(c, ("earning", "rules", i), item, sources, "rule", "it never earns")
    for i, item in enumerate(bonuses):
        if item.get("trigger") == "challenge":
            _rows_never_come(c, ("bonuses", i), item, sources, "challenge", "it is never reached")
    for i, rule in enumerate(rules):
        ctx = expressions.ExprContext.for_rule(rule.get("on"), pctx.extras, rfm=pctx.has_rfm)
        base: PathKey = ("earning", "rules", i)
        c.expression((*base, "when"), rule.get("when"), ctx, "condition")
        c.tier_literals((*base, "when"), rule.get("when"), pctx.tiers)
        c.expression((*base, "points"), rule.get("points"), ctx, "value")
        c.tier_literals((*base, "points"), rule.get("points"), pctx.tiers)

    for i, bonus in enumerate(bonuses):
        base = ("bonuses", i)
        if bonus.get("trigger") == "challenge":
            ctx = expressions.ExprContext.for_rule(bonus.get("on"), pctx.extras, rfm=pctx.has_rfm)
            c.expression((*base, "when"), bonus.get("when"), ctx, "condition")
            c.tier_literals((*base, "when"), bonus.get("when"), pctx.tiers)
            goal = bonus.get("goal") or {}
            if "sum" in goal:
                c.expression((*base, "goal", "sum"), goal.get("sum"), ctx, "value")
                c.tier_literals((*base, "goal", "sum"), goal.get("sum"), pctx.tiers)

    expiry = data.get("expiry") or {}
    for key in ("after", "inactivity", "notify_before"):
        c.duration(("expiry", key), expiry.get(key))

    tiers = data.get("tiers") or {}
    for key in ("window", "retain"):
        c.duration(("tiers", key), tiers.get(key))
    levels = tiers.get("levels") or []
    c.unique_ids(
        [(("tiers", "levels", i, "id"), lv.get("id")) for i, lv in enumerate(levels)], "tier"
    )
    if levels:
        if levels[0].get("min") not in (0, None):
            c.add(
                "R305",
                ("tiers", "levels", 0, "min"),
                f"the lowest tier '{levels[0].get('id')}' has min {levels[0].get('min')}",
                "Everyone starts at the lowest tier, so its min must be 0.",
            )
        for i in range(1, len(levels)):
            prev, cur = levels[i - 1].get("min"), levels[i].get("min")
            if isinstance(prev, (int, float)) and isinstance(cur, (int, float)) and cur <= prev:
                c.add(
                    "R303",
                    ("tiers", "levels", i, "min"),
                    f"tier '{levels[i].get('id')}' min {cur} is not above "
                    f"'{levels[i - 1].get('id')}' min {prev}",
                    "List tiers from lowest to highest with strictly ascending min values.",
                )

    pools = (data.get("coupons") or {}).get("pools") or []
    c.unique_ids(
        [(("coupons", "pools", i, "id"), p.get("id")) for i, p in enumerate(pools)], "coupon pool"
    )
    for i, pool in enumerate(pools):
        _pool_capacity(c, i, pool)
        if pool.get("source") == "file":
            rel = pool.get("path")
            if isinstance(rel, str) and rel and not _source_path_ok(rel):
                c.add(
                    "R306",
                    ("coupons", "pools", i, "path"),
                    f"coupon file {rel!r} leaves the program's folder",
                    "Coupon files are kept with the program: write a path relative to the "
                    "program file without '..', such as 'coupons/reward20.csv'.",
                )
            elif not _source_path_ok(rel) or not (path.parent / rel).is_file():
                c.add(
                    "R306",
                    ("coupons", "pools", i, "path"),
                    f"coupon file {rel!r} not found next to the program",
                    "The path is relative to the program file; a CSV with a `code` column "
                    "(and optionally `valid_until`).",
                )

    rewards = data.get("rewards") or []
    c.unique_ids([(("rewards", i, "id"), r.get("id")) for i, r in enumerate(rewards)], "reward")
    for i, reward in enumerate(rewards):
        pool = reward.get("coupon_pool")
        if pool is not None and pool not in pctx.pools:
            c.add(
                "R302",
                ("rewards", i, "coupon_pool"),
                f"reward '{reward.get('id')}' uses unknown coupon pool '{pool}'",
                _known("coupon pools", pctx.pools),
            )
        tier = reward.get("min_tier")
        if tier is not None and tier not in pctx.tiers:
            c.add(
                "R302",
                ("rewards", i, "min_tier"),
                f"reward '{reward.get('id')}' needs unknown tier '{tier}'",
                _known("tiers", pctx.tiers),
            )

    segments = data.get("segments") or []
    c.unique_ids([(("segments", i, "id"), s.get("id")) for i, s in enumerate(segments)], "segment")
    for i, seg in enumerate(segments):
        base = ("segments", i)
        c.duration((*base, "window"), seg.get("window"))
        c.duration((*base, "horizon"), seg.get("horizon"))
        if seg.get("type") == "rfm":
            ctx = expressions.ExprContext.for_rule(None, pctx.extras, rfm=True)
            scores = seg.get("scores", 5)
            for gname, rule in (seg.get("groups") or {}).items():
                c.expression((*base, "groups", gname), rule, ctx, "condition")
                c.tier_literals((*base, "groups", gname), rule, pctx.tiers)
                impossible = _score_never(rule, scores) if isinstance(scores, int) else None
                if impossible:
                    c.add(
                        "R308",
                        (*base, "groups", gname),
                        f"group '{gname}' never matches: {impossible}, and scores run from 1 "
                        f"to {scores}",
                        "Compare r, f and m with numbers from 1 to `scores`.",
                        severity="warning",
                    )
        elif seg.get("type") == "rule":
            ctx = expressions.ExprContext.for_rule(None, pctx.extras, rfm=pctx.has_rfm)
            c.expression((*base, "when"), seg.get("when"), ctx, "condition")
            c.tier_literals((*base, "when"), seg.get("when"), pctx.tiers)
        elif seg.get("type") == "churn":
            levels_map = seg.get("levels") or {}
            values = list(levels_map.values())
            if any(not isinstance(v, (int, float)) for v in values):
                continue
            if values != sorted(values) or len(set(values)) != len(values):
                c.add(
                    "R308",
                    (*base, "levels"),
                    f"churn levels of '{seg.get('id')}' must have strictly ascending thresholds",
                    "List levels from lowest to highest threshold, "
                    "e.g. {low: 0, medium: 1.5, high: 3}.",
                )
            if seg.get("model") == "bgnbd" and any(v < 0 or v > 1 for v in values):
                c.add(
                    "R308",
                    (*base, "levels"),
                    "bgnbd churn thresholds are probabilities (1 - P(alive)) and must be in [0, 1]",
                    "Use thresholds such as {low: 0, medium: 0.5, high: 0.8}.",
                )

    messaging = data.get("messaging") or {}
    region = messaging.get("default_region")
    if isinstance(region, str):
        import phonenumbers

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            c.add(
                "R308",
                ("messaging", "default_region"),
                f"unknown phone region '{region}'",
                "Use a two-letter country code such as 'PL' or 'DE'.",
            )
    return c.out, pctx


# The source that gives the rows of each `on` that is not always there.
_ROW_SOURCE = {"order_item": "order_items", "event": "events"}


def _rows_never_come(
    c: Checker, base: PathKey, item: dict, sources: dict, what: str, outcome: str
) -> None:
    """A rule (or challenge) on item or event rows in a program that reads no such rows."""
    on = item.get("on")
    source = _ROW_SOURCE.get(on) if isinstance(on, str) else None
    if source is None or source in sources:
        return
    c.add(
        "R308",
        (*base, "on"),
        f"{what} '{item.get('id')}' is on {on} rows, but the program has no `{source}` "
        f"source: {outcome}",
        f"Add `sources.{source}` with the path of the export, or change `on`.",
        severity="warning",
    )


def _pool_capacity(c: Checker, i: int, pool: dict) -> None:
    """The check of `loyalty coupons generate`: codes of `length` characters from the
    coupon alphabet, at most half of those possible (else codes are easy to guess)."""
    from loyalty_cli.engine.coupons import ALPHABET, guessable

    count, length = pool.get("count"), pool.get("length")
    if pool.get("source") != "generate" or not isinstance(count, int):
        return
    if not isinstance(length, int) or isinstance(length, bool) or length > 12:
        return  # 31**13 / 2 is far above the largest count
    possible = guessable(count, length)
    if possible is not None:
        c.add(
            "R308",
            ("coupons", "pools", i, "count"),
            f"coupon pool '{pool.get('id')}': {count:,} codes of {length} characters would be "
            f"more than half of the {possible:,} possible ones, so `loyalty coupons generate` "
            "refuses them (codes would be easy to guess)",
            f"Raise the pool's `length` (each character multiplies the codes by "
            f"{len(ALPHABET)}), or lower `count`.",
            severity="warning",
        )


def _known(what: str, names: Iterable[str]) -> str:
    names = sorted(str(n) for n in names if n)
    return f"Known {what}: {', '.join(names)}." if names else f"The program defines no {what}."


def workflow_paths(doc: YamlDoc) -> tuple[list[Path], list[Diagnostic]]:
    """Resolve the program's `workflows:` globs relative to the program file."""
    c = Checker(doc)
    base = Path(doc.path).parent
    found: list[Path] = []
    patterns = (doc.data or {}).get("workflows") or []
    if not isinstance(patterns, list):  # the schema reports it; one pattern is meant
        patterns = [patterns]
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            continue  # reported by the schema
        if not _source_path_ok(pattern):
            c.add(
                "R306",
                ("workflows", i),
                f"workflow path {pattern!r} leaves the program's folder",
                "Use a relative path such as 'workflows/*.yaml'.",
            )
            continue
        matches = sorted(Path(p) for p in glob.glob(str(base / pattern)) if Path(p).is_file())
        if not matches:
            c.add(
                "R306",
                ("workflows", i),
                f"no workflow file matches {pattern!r}",
                "The pattern is relative to the program file.",
            )
        found.extend(matches)
    return found, c.out


def _never_fires(c: Checker, base: PathKey, trigger: Any, pctx: ProgramContext) -> None:
    """Warnings for a trigger the program can never fire: points_expiring without expiry,
    tier_up and tier_down without tiers, a move up to the lowest tier or down to the top."""
    params: dict = {}
    at_key = isinstance(trigger, dict)  # the trigger's name: its key, or the bare value
    if isinstance(trigger, str):
        name, path = trigger, (*base, "trigger")
    elif isinstance(trigger, dict) and len(trigger) == 1:
        ((name, given),) = trigger.items()
        params = given if isinstance(given, dict) else {}
        path = (*base, "trigger", name)
    else:
        return
    hint_other = "or use another trigger."
    if name == "points_expiring" and not pctx.data.get("expiry"):
        c.add(
            "R308",
            path,
            "trigger points_expiring never fires: the program has no `expiry`, so points "
            "never expire",
            f"Add `expiry:` to the program, {hint_other}",
            at_key=at_key,
            severity="warning",
        )
    if name not in ("tier_up", "tier_down"):
        return
    to = params.get("to")
    if not pctx.tiers:
        if to is None:  # (a `to:` is reported as an unknown tier)
            c.add(
                "R308",
                path,
                f"trigger {name} never fires: the program has no tiers",
                f"Add `tiers:` to the program, {hint_other}",
                at_key=at_key,
                severity="warning",
            )
        return
    end = pctx.tiers[0] if name == "tier_up" else pctx.tiers[-1]
    if to == end:
        which, move = ("lowest", "up") if name == "tier_up" else ("top", "down")
        others = [t for t in pctx.tiers if t != end]
        c.add(
            "R308",
            (*path, "to"),
            f"trigger {name} never fires: no member moves {move} to '{end}', the {which} tier",
            f"Name another tier ({', '.join(others)}), or leave out `to:` for any move {move}.",
            severity="warning",
        )


def _unique_step_ids(c: Checker, base: PathKey, steps: list) -> None:
    """Step ids, the default `step-N` of a step without an id included: two steps with one
    id would share their message ids and audience rows, and one message would be lost."""
    seen: dict[str, tuple[int, bool]] = {}  # id -> (step index, whether written)
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        written = bool(step.get("id"))  # as the engine: `id` or step-N (1-based)
        sid = step.get("id") if written else f"step-{i + 1}"
        if not isinstance(sid, str):
            continue
        if sid not in seen:
            seen[sid] = (i, written)
            continue
        first, first_written = seen[sid]
        first_pos = c.doc.pos(
            (*base, "steps", first, "id") if first_written else (*base, "steps", first)
        )
        line = f" on line {first_pos.line}" if first_pos else ""
        if written and first_written:
            message = f"duplicate step id '{sid}' (first used{line})"
        elif written:
            message = (
                f"step id '{sid}' is also the default id of step {first + 1}{line}, which has no id"
            )
        else:
            message = (
                f"step {i + 1} has no id, so its id is '{sid}', which step {first + 1}{line} "
                "already has"
            )
        default = "a step without an id is step-1, step-2, ... by its position"
        if written and first_written:
            hint = "Each step needs its own id; rename one of them."
        elif written:
            hint = f"Each step needs its own id and {default}: rename this step."
        else:
            hint = (
                f"Each step needs its own id and {default}: rename step {first + 1}, or "
                "give this step an id of its own."
            )
        c.add("R301", (*base, "steps", i, "id") if written else (*base, "steps", i), message, hint)


def _redeemed_coupon(trigger, pctx: ProgramContext) -> list[bool]:
    """Whether a message of a step without a coupon of its own may have one, the code a
    redemption got (a `redemption` trigger whose rewards have coupon pools): [False], [True]
    or both, for templates to be rendered each way they can be."""
    if trigger == "redemption":
        reward = None
    elif isinstance(trigger, dict) and "redemption" in trigger:
        reward = (trigger.get("redemption") or {}).get("reward")
    else:
        return [False]
    rewards = [
        r
        for r in pctx.data.get("rewards") or []
        if isinstance(r, dict) and (reward is None or r.get("id") == reward)
    ]
    found = sorted({bool(r.get("coupon_pool")) for r in rewards}) or [False]
    return found


def _sample_member(program: dict) -> dict:
    """The sample member templates are rendered for; a program whose own numbers are wrong
    (an infinite tier min, a reward cost of .nan: reported at the program) gets the sample
    program's member instead, so its workflows' templates are still checked."""
    from loyalty_cli.render import context as render_context

    try:
        return render_context.sample_context(program)
    except (ArithmeticError, ValueError, TypeError, OverflowError):
        return render_context.sample_context(None)


def check_workflow(
    doc: YamlDoc, pctx: ProgramContext | None, template_cache: dict | None = None
) -> list[Diagnostic]:
    """Semantic checks of a workflow that passed the schema, in its program's context."""
    from loyalty_cli.render import sandbox

    c = Checker(doc)
    wf = doc.data.get("workflow") or {}
    base: PathKey = ("workflow",)
    extras = pctx.extras if pctx else {}
    # Without the program it is not known whether it scores r, f and m: they are allowed,
    # and checked with the program (docs/validate.md).
    has_rfm = pctx.has_rfm if pctx else True
    ctx = expressions.ExprContext.for_rule(None, extras, rfm=has_rfm, workflow=True)
    tiers = pctx.tiers if pctx else None  # without the program, its levels are unknown

    for part in ("audience", "exit_when"):
        c.expression((*base, part), wf.get(part), ctx, "condition")
        c.tier_literals((*base, part), wf.get(part), tiers)
    c.duration((*base, "reentry"), wf.get("reentry"))

    trigger = wf.get("trigger")
    if pctx is not None:
        _never_fires(c, base, trigger, pctx)
    if isinstance(trigger, dict) and len(trigger) == 1:
        ((tname, params),) = trigger.items()
        params = params or {}
        tpath = (*base, "trigger", tname)
        if pctx is not None and isinstance(params, dict):
            if tname in ("segment_enter", "segment_exit"):
                seg = params.get("segment")
                if seg not in pctx.segments:
                    c.add(
                        "R302",
                        (*tpath, "segment"),
                        f"unknown segment '{seg}'",
                        _known("segments", pctx.segments),
                    )
                elif params.get("group") is not None and params["group"] not in pctx.segments[seg]:
                    c.add(
                        "R302",
                        (*tpath, "group"),
                        f"segment '{seg}' has no group '{params['group']}'",
                        _known(f"groups of '{seg}'", pctx.segments[seg]),
                    )
            if tname in ("tier_up", "tier_down") and params.get("to") is not None:
                if params["to"] not in pctx.tiers:
                    c.add(
                        "R302",
                        (*tpath, "to"),
                        f"unknown tier '{params['to']}'",
                        _known("tiers", pctx.tiers),
                    )
            if tname == "redemption" and params.get("reward") is not None:
                if params["reward"] not in pctx.rewards:
                    c.add(
                        "R302",
                        (*tpath, "reward"),
                        f"unknown reward '{params['reward']}'",
                        _known("rewards", pctx.rewards),
                    )
        if isinstance(params, dict):
            if tname == "points_expiring":
                c.duration((*tpath, "within"), params.get("within"))
            if tname == "schedule":
                every, day = params.get("every"), params.get("day")
                if isinstance(day, int):
                    if every == "week" and not 1 <= day <= 7:
                        c.add(
                            "R308",
                            (*tpath, "day"),
                            f"weekday {day} is not in 1..7",
                            "For `every: week`, day is the ISO weekday: 1 = Monday ... 7 = Sunday.",
                        )
                    if every == "month" and not 1 <= day <= 31:
                        c.add(
                            "R308",
                            (*tpath, "day"),
                            f"day of month {day} is not in 1..31",
                            "For `every: month`, day is the day of the month (1..31).",
                        )

    steps = wf.get("steps") or []
    _unique_step_ids(c, base, steps)
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        spath = (*base, "steps", i)
        c.duration((*spath, "wait"), step.get("wait"), at_least_a_day=True)
        if "if" in step:
            c.expression((*spath, "if"), step.get("if"), ctx, "condition")
            c.tier_literals((*spath, "if"), step.get("if"), tiers)
        coupon = step.get("coupon")
        if isinstance(coupon, dict) and pctx is not None and coupon.get("pool") not in pctx.pools:
            c.add(
                "R302",
                (*spath, "coupon", "pool"),
                f"unknown coupon pool '{coupon.get('pool')}'",
                _known("coupon pools", pctx.pools),
            )
        send = step.get("send")
        if isinstance(send, dict) and pctx is not None and pctx.template_dir is not None:
            name = send.get("template")
            channels = [(send.get("channel"), ("channel",))]
            if send.get("fallback"):
                channels.append((send.get("fallback"), ("fallback",)))
            # With a coupon of its own, or the one the redemption that triggered it got;
            # without when the step may have none (a reward without a coupon pool).
            variants = [True] if isinstance(coupon, dict) else _redeemed_coupon(trigger, pctx)
            for channel, has_coupon in ((ch, v) for ch, _ in channels for v in variants):
                pos = doc.pos((*spath, "send", "template"))
                key = (str(pctx.template_dir), name, channel, has_coupon)
                if template_cache is not None and key in template_cache:
                    continue
                sample = _sample_member(pctx.data)
                if not has_coupon:
                    # A step that assigns no coupon renders with `coupon` empty.
                    sample = {**sample, "coupon": None}
                env_key = ("env", str(pctx.template_dir))
                if template_cache is not None and env_key not in template_cache:
                    template_cache[env_key] = sandbox.make_environment(pctx.template_dir)
                found = sandbox.check_template(
                    pctx.template_dir,
                    name,
                    channel,
                    sample_context=sample,
                    ref_path=doc.path,
                    ref_line=pos.line if pos else None,
                    ref_col=pos.col if pos else None,
                    env=template_cache.get(env_key) if template_cache is not None else None,
                )
                if template_cache is not None:
                    template_cache[key] = True
                c.out.extend(found)
    return c.out
