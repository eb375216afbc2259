"""Workflows (SPEC 5 step 9, 6 and 7): members enter on a trigger and go through steps.

State: `wf_instances` has one row per time a member entered a workflow, keyed by
(workflow_id, customer_id, entered_on): `status` active, completed or exited, `next_step`
the index of the step to take next, `resume_on` the day a wait ends. `wf_log` records what
each run did (entered, exited, waiting, sent, skipped, awarded, completed). The files of a
day (audiences/<workflow>.csv, messages/<workflow>/<step>.*) are written from the log of
that day, so running a day again writes the same files.

Within a run, after tiers and segments: workflows one by one, highest `priority` first
(then by id), so that they send first when `messaging.max_per_week` is reached. In each,
the triggered members who meet the audience (and may enter again) enter; then steps are
taken in order, and every active member goes as far as its steps allow (a `wait` stops it
until its day). `exit_when` is checked before every step. Loops are over workflows and
steps; members are handled as sets in SQL. Only what cannot be SQL is Python: message ids
(SHA-256 of JSON), phone numbers (phonenumbers) and rendering templates (Jinja2).

Expressions (`audience`, `exit_when`, `if`) see the member as after the run's other steps:
tier, balances, orders and segment scores as they stand on the run's day. A member enters
at the end of the run of the day, after that day's orders: `ordered_since_entry` is true
once they have an order on a later day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from loyalty_cli import exprbase as expressions
from loyalty_cli import state
from loyalty_cli.config.durations import parse_duration
from loyalty_cli.engine import coupons, ledger, memberview
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.redemptions import REQUEST_PREFIX
from loyalty_cli.engine.timeutil import sql_literal


def log_order(alias: str = "") -> str:
    """SQL ORDER BY terms putting one instance's `wf_log` rows of a day in the order they
    happened: entered, then step by step (an exit before the step's own action), completed."""
    a = f"{alias}." if alias else ""
    return (
        f"CASE {a}action WHEN 'entered' THEN -1 WHEN 'completed' THEN 2147483647 "
        f"ELSE {a}step END, {a}action <> 'exited'"
    )


class Refused(Exception):
    """The run cannot go on for its data (a coupon pool short): refused, state unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def workflows_of(ctx: RunContext) -> list[dict]:
    """The program's workflows, highest priority first, then by id."""
    wfs = [wdoc["workflow"] for _, wdoc in ctx.program.workflows]
    return sorted(wfs, key=lambda w: (-int(w.get("priority") or 0), str(w["id"])))


def step_ids(wf: dict) -> list[str]:
    return [str(s.get("id") or f"step-{i}") for i, s in enumerate(wf["steps"], start=1)]


def trigger_of(wf: dict) -> tuple[str, dict]:
    """(name, parameters) of a workflow's trigger, bare names included."""
    trigger = wf["trigger"]
    if isinstance(trigger, str):
        return trigger, {}
    ((name, params),) = trigger.items()
    return str(name), dict(params or {})


# --------------------------------------------------------------------------- the stage


def apply_workflows(ctx: RunContext) -> None:
    """Advance every workflow of the program for the run's day."""
    wfs = workflows_of(ctx)
    if not wfs:
        return
    # Who each trigger fires for, first: the member view is then worked out only for them
    # and for the members whose next step is due (a schedule trigger names everyone).
    ctx.q(
        "CREATE OR REPLACE TEMP TABLE _wf_trig "
        "(workflow_id VARCHAR, customer_id VARCHAR, ref VARCHAR)"
    )
    for wf in wfs:
        fired = _trigger_sql(ctx, wf)
        if fired is not None:
            sql, params = fired
            ctx.q(
                f"""INSERT INTO _wf_trig SELECT $wf, customer_id, min(ref)
                FROM ({sql}) f GROUP BY customer_id""",
                {**params, "wf": wf["id"]},
            )
    _member_table(ctx)
    for wf in wfs:
        _enter(ctx, wf)
        _advance(ctx, wf)
    # Codes left in the pools the workflows hand out (what `plan` shows next to those needed).
    pools = sorted({s["coupon"]["pool"] for wf in wfs for s in wf["steps"] if s.get("coupon")})
    for pool in pools:
        ctx.count("coupons", f"{pool}.left", coupons.pool_free(ctx.con, pool, ctx.as_of))
    for table in (
        "_wf_trig",
        "_wf_member",
        "_wf_cur",
        "_wf_go",
        "_wf_sent",
        "_wf_skip",
        "_wf_phones",
    ):
        ctx.q(f"DROP TABLE IF EXISTS {table}")


def _member_table(ctx: RunContext) -> None:
    """`_wf_member`: the member view as it stands after the run's other steps, of the
    members triggered (`_wf_trig`) and of those whose next step is due."""
    d = ctx.sql_date()
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _wf_cand AS
        SELECT customer_id FROM _wf_trig
        UNION SELECT customer_id FROM wf_instances
        WHERE status = 'active' AND (resume_on IS NULL OR resume_on <= {d})"""
    )
    everyone = ctx.scalar("SELECT count(*) FROM _wf_cand") >= ctx.scalar(
        "SELECT count(*) FROM customers"
    )

    view = memberview.member_view_sql(
        ctx, among=None if everyone else "SELECT customer_id FROM _wf_cand"
    )
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _wf_member AS
        SELECT m.* FROM ({view}) m JOIN customers c USING (customer_id)
        WHERE c.join_day <= {d}"""
    )
    ctx.q("DROP TABLE _wf_cand")


def _expr_ctx(ctx: RunContext) -> expressions.ExprContext:
    return expressions.ExprContext.for_rule(
        None, ctx.program.extras, rfm=ctx.program.has_rfm, workflow=True
    )


def _condition(ctx: RunContext, text) -> str:
    """SQL of a workflow condition over `"member"` and `"customer"` (NULL counts as false)."""
    if text is None:
        return "TRUE"
    sql = expressions.compile_expression(text, _expr_ctx(ctx), kind="condition")
    return expressions.condition_sql(sql)


_MEMBER_OF_INSTANCE = """
    SELECT m.*, i.entered_on, i.trigger_ref,
           coalesce(m.last_order_day > i.entered_on, FALSE) AS ordered_since_entry,
           CAST({d} - i.entered_on AS BIGINT) AS days_since_entry
    FROM {instances} i JOIN _wf_member m USING (customer_id)"""

_JOIN_CUSTOMER = 'JOIN cust_view AS "customer" ON "customer".customer_id = "member".customer_id'


def _trigger_low(ctx: RunContext) -> dt.date:
    """Triggers fire for what happened after this day, up to the run's day. A first run
    covers all history but reacts only to its own day: nobody is messaged about the past."""
    if ctx.window_start is None:
        return ctx.as_of - dt.timedelta(days=1)
    return ctx.window_start


def _trigger_sql(ctx: RunContext, wf: dict) -> tuple[str, dict] | None:
    """SQL of the members a workflow's trigger fires for (customer_id, ref), with its
    parameters; None when it cannot fire in this run."""
    name, params = trigger_of(wf)
    d = ctx.sql_date()
    low = ctx.sql_date(_trigger_low(ctx))
    in_window = "{col} > " + low + " AND {col} <= " + d
    if name == "joined":
        return (
            f"SELECT customer_id, CAST(NULL AS VARCHAR) AS ref FROM customers "
            f"WHERE {in_window.format(col='join_day')}",
            {},
        )
    if name == "birthday":
        # This year's and last year's birthdays (29 February -> 28 February in other years),
        # for members who had joined by then.
        bdays = " UNION ALL ".join(
            f"""SELECT customer_id, join_day,
                       CASE WHEN month(birth_date) = 2 AND day(birth_date) = 29
                            THEN CAST(make_date({y}, 3, 1) - INTERVAL 1 DAY AS DATE)
                            ELSE make_date({y}, month(birth_date), day(birth_date)) END AS bday
                FROM customers WHERE birth_date IS NOT NULL"""
            for y in (f"year({d}) - 1", f"year({d})")
        )
        return (
            f"SELECT DISTINCT customer_id, CAST(NULL AS VARCHAR) AS ref FROM ({bdays}) b "
            f"WHERE join_day <= bday AND {in_window.format(col='bday')}",
            {},
        )
    if name in ("tier_up", "tier_down"):
        if ctx.first_run:
            return None  # a first run places members; it promotes nobody
        return (
            f"""SELECT customer_id, to_tier AS ref FROM tier_changes
            WHERE change = $change AND {in_window.format(col="effective_on")}
              AND ($to IS NULL OR to_tier = $to)""",
            {"change": "up" if name == "tier_up" else "down", "to": params.get("to")},
        )
    if name in ("segment_enter", "segment_exit"):
        if ctx.first_run:
            return None  # every member of a segment would "enter" it on a first run
        change, other = ("enter", "exit") if name == "segment_enter" else ("exit", "enter")
        # Without a group, moving between groups of the segment is neither entering nor
        # leaving it: a member's exit and entry of the same day cancel out.
        same_day = (
            ""
            if params.get("group") is not None
            else f"""AND NOT EXISTS (SELECT 1 FROM segment_changes o
                     WHERE o.segment_id = s.segment_id AND o.customer_id = s.customer_id
                       AND o.on_day = s.on_day AND o.change = '{other}')"""
        )
        return (
            f"""SELECT customer_id, grp AS ref FROM segment_changes s
            WHERE segment_id = $segment AND change = '{change}'
              AND {in_window.format(col="on_day")}
              AND ($group IS NULL OR grp = $group) {same_day}""",
            {"segment": params["segment"], "group": params.get("group")},
        )
    if name == "redemption":
        # Accepted by this run; a first run's only if requested on its day. The instance
        # keeps the redemption's id: its templates see the reward and the code it got.
        first_day = f"AND CAST(requested_at AS DATE) = {d}" if ctx.first_run else ""
        return (
            f"""SELECT customer_id, redemption_id AS ref FROM redemptions
            WHERE status = 'accepted' AND processed_on = {d} {first_day}
              AND ($reward IS NULL OR reward_id = $reward)""",
            {"reward": params.get("reward")},
        )
    if name == "points_expiring":
        within = parse_duration(params.get("within")) or ctx.program.duration(
            "expiry", "notify_before"
        )
        if within is None:
            return None
        # Lots that expire by the end of the run's day are gone by now (expiry step). With
        # `inactivity`, all of a member's points go on the day it is reached: their last day.
        until = f"CAST({d} + {within.sql_interval()} AS DATE)"
        lots = f"""SELECT customer_id FROM lots WHERE status = 'available' AND remaining > 0
                   AND expires_on > {d} AND expires_on <= {until}"""
        inactive = ledger.inactivity_days_sql(ctx)
        if inactive is not None:
            lots += f"""
            UNION SELECT customer_id FROM ({inactive}) x
            WHERE x.inactive_on > {d} AND x.inactive_on <= {until}
              AND customer_id IN (SELECT customer_id FROM lots
                                  WHERE status = 'available' AND remaining > 0)"""
        return (f"SELECT DISTINCT customer_id, CAST(NULL AS VARCHAR) AS ref FROM ({lots}) e", {})
    if name == "schedule":
        # Due when a day of the schedule falls in the run's window: one day in a nightly
        # run, all the days since the last run in a run that did not catch up (`joined` and
        # `birthday` fire for those days too). The members enter once.
        if not _schedule_due(params, _trigger_low(ctx), ctx.as_of):
            return None
        return (
            "SELECT customer_id, CAST(NULL AS VARCHAR) AS ref FROM customers "
            f"WHERE join_day <= {d}",
            {},
        )
    raise ValueError(f"unknown workflow trigger {name!r}")


def _schedule_due(params: dict, low: dt.date, high: dt.date) -> bool:
    """Whether a day of the schedule falls in (low, high]: `day: 31` of a month is its
    last day when it is shorter."""
    every, day = params["every"], int(params.get("day") or 0)
    if high <= low:
        return False
    if every == "day":
        return True
    if every == "week":
        return (high - low).days >= 7 or any(
            (low + dt.timedelta(days=n)).isoweekday() == day
            for n in range(1, (high - low).days + 1)
        )
    # Months: the schedule's day of each month from low's to high's.
    month = low.replace(day=1)
    while month <= high:
        due = month.replace(day=min(day, _month_days(month)))
        if low < due <= high:
            return True
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return False


def _month_days(day: dt.date) -> int:
    nxt = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return (nxt - dt.timedelta(days=1)).day


def _enter(ctx: RunContext, wf: dict) -> None:
    """Triggered members who meet the audience and may enter (no active instance; entered
    never before, or at least `reentry` ago) enter on the run's day."""
    d = ctx.sql_date()
    reentry = parse_duration(wf.get("reentry"))
    blocked = (
        "TRUE"
        if reentry is None
        else f"CAST(i.entered_on + {reentry.sql_interval()} AS DATE) > {d}"
    )
    ctx.q("DROP TABLE IF EXISTS _wf_new")
    ctx.q(
        f"""CREATE TEMP TABLE _wf_new AS
        WITH t AS (SELECT customer_id, ref AS trigger_ref, {d} AS entered_on
                   FROM _wf_trig WHERE workflow_id = $wf)
        SELECT "member".customer_id, "member".trigger_ref
        FROM ({_MEMBER_OF_INSTANCE.format(d=d, instances="t")}) AS "member" {_JOIN_CUSTOMER}
        WHERE {_condition(ctx, wf.get("audience"))}
          AND NOT EXISTS (SELECT 1 FROM wf_instances i
                          WHERE i.workflow_id = $wf AND i.customer_id = "member".customer_id
                            AND (i.status = 'active' OR i.entered_on = {d} OR {blocked}))""",
        {"wf": wf["id"]},
    )
    ctx.q(
        f"""INSERT INTO wf_instances
        SELECT $wf, customer_id, {d}, trigger_ref, 0, NULL, 'active', NULL FROM _wf_new""",
        {"wf": wf["id"]},
    )
    ctx.q(
        f"""INSERT INTO wf_log
        SELECT $wf, customer_id, {d}, NULL, NULL, {d}, 'entered', NULL, NULL, NULL, NULL
        FROM _wf_new""",
        {"wf": wf["id"]},
    )
    ctx.count("workflows", f"{wf['id']}.entered", ctx.scalar("SELECT count(*) FROM _wf_new"))
    ctx.q("DROP TABLE _wf_new")


def _log(
    ctx: RunContext,
    wf: dict,
    k: int | None,
    step_id: str | None,
    action: str,
    rows: str,
    channel: str = "NULL",
    message_id: str = "NULL",
    detail: str = "NULL",
    recipient: str = "NULL",
) -> int:
    """Log `action` for the instances of `rows` (customer_id, entered_on); returns how many."""
    d = ctx.sql_date()
    row = ctx.q(
        f"""INSERT INTO wf_log
        SELECT $wf, customer_id, entered_on, $k, $step, {d}, $action, {channel},
               {message_id}, {detail}, {recipient}
        FROM {rows}""",
        {"wf": wf["id"], "k": k, "step": step_id, "action": action},
    ).fetchone()
    n = int(row[0]) if row else 0
    ctx.count("workflows", f"{wf['id']}.{action}", n)
    return n


_SAME_INSTANCE = """wf_instances.workflow_id = $wf AND wf_instances.customer_id = x.customer_id
                    AND wf_instances.entered_on = x.entered_on"""


def _advance(ctx: RunContext, wf: dict) -> None:
    """Take each step in order for the members at it; see the module's docstring.

    Steps nobody is at cost no statement: the members due at each step are counted once,
    and those who pass a step (other than a wait) are at the next one."""
    d = ctx.sql_date()
    ids = step_ids(wf)
    exit_when = wf.get("exit_when")
    at = dict(
        ctx.q(
            f"""SELECT next_step, count(*) FROM wf_instances
            WHERE workflow_id = $wf AND status = 'active'
              AND (resume_on IS NULL OR resume_on <= {d}) GROUP BY next_step""",
            {"wf": wf["id"]},
        ).fetchall()
    )
    for k, step in enumerate(wf["steps"]):
        if not at.get(k):
            continue
        ctx.q(
            f"""CREATE OR REPLACE TEMP TABLE _wf_cur AS
            {_MEMBER_OF_INSTANCE.format(d=d, instances="wf_instances")}
            WHERE i.workflow_id = $wf AND i.status = 'active' AND i.next_step = $k
              AND (i.resume_on IS NULL OR i.resume_on <= {d})""",
            {"wf": wf["id"], "k": k},
        )
        if exit_when is not None:
            leaving = _go(ctx, exit_when)
            if _log(ctx, wf, k, ids[k], "exited", leaving):
                ctx.q(
                    f"""UPDATE wf_instances SET status = 'exited', ended_on = {d}
                    FROM {leaving} x WHERE {_SAME_INSTANCE}""",
                    {"wf": wf["id"]},
                )
                ctx.q(
                    f"""DELETE FROM _wf_cur WHERE EXISTS (SELECT 1 FROM {leaving} x
                    WHERE x.customer_id = _wf_cur.customer_id
                      AND x.entered_on = _wf_cur.entered_on)"""
                )
        if "wait" in step:
            wait = parse_duration(step["wait"])
            assert wait is not None
            resume = f"CAST({d} + {wait.sql_interval()} AS DATE)"
            ctx.q(
                f"""UPDATE wf_instances SET next_step = $k + 1, resume_on = {resume}
                FROM _wf_cur x WHERE {_SAME_INSTANCE}""",
                {"wf": wf["id"], "k": k},
            )
            _log(ctx, wf, k, ids[k], "waiting", "_wf_cur", detail=f"CAST({resume} AS VARCHAR)")
            continue
        go = _go(ctx, step.get("if"))
        if go != "_wf_cur":
            ctx.q(
                f"""CREATE OR REPLACE TEMP TABLE _wf_skip AS SELECT customer_id, entered_on
                FROM _wf_cur c WHERE NOT EXISTS (SELECT 1 FROM {go} x
                    WHERE x.customer_id = c.customer_id AND x.entered_on = c.entered_on)"""
            )
            _log(ctx, wf, k, ids[k], "skipped", "_wf_skip", detail="'condition'")
            ctx.q("DROP TABLE _wf_skip")
        if "send" in step:
            _send(ctx, wf, k, ids[k], step, go)
        elif "award" in step:
            _award(ctx, wf, k, ids[k], step["award"], go)
        moved = ctx.q(
            f"""UPDATE wf_instances SET next_step = $k + 1, resume_on = NULL
            FROM _wf_cur x WHERE {_SAME_INSTANCE}""",
            {"wf": wf["id"], "k": k},
        ).fetchone()
        at[k + 1] = at.get(k + 1, 0) + (int(moved[0]) if moved else 0)
    if any(n for step, n in at.items() if step >= len(ids)):
        done = f"""FROM wf_instances WHERE workflow_id = $wf AND status = 'active'
                   AND next_step >= {len(ids)}"""
        _log(ctx, wf, None, None, "completed", f"(SELECT customer_id, entered_on {done})")
        ctx.q(
            f"""UPDATE wf_instances SET status = 'completed', ended_on = {d}
            WHERE workflow_id = $wf AND status = 'active' AND next_step >= {len(ids)}""",
            {"wf": wf["id"]},
        )


# An email address the batches can carry: one address, no spaces, commas, semicolons,
# angle brackets or quotes (nothing that would add a recipient or a header), and a domain
# with a dot. Deliverability is the email tool's to judge.
EMAIL_PATTERN = r"[^@\s,;<>\"()\[\]]+@[^@\s,;<>\"()\[\]]+\.[^@\s,;<>\"()\[\].]+"


def _go(ctx: RunContext, condition) -> str:
    """The members of `_wf_cur` for whom the condition holds: `_wf_go`, or `_wf_cur` itself
    when there is no condition."""
    if condition is None:
        return "_wf_cur"
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _wf_go AS SELECT "member".*
        FROM _wf_cur AS "member" {_JOIN_CUSTOMER}
        WHERE {_condition(ctx, condition)}"""
    )
    return "_wf_go"


def _send(ctx: RunContext, wf: dict, k: int, step_id: str, step: dict, go: str) -> None:
    """The members of `go` get the step's message on the first channel they can get
    (the channel, else the fallback) unless they are at `max_per_week` already."""
    from loyalty_cli.render import message_id

    d = ctx.sql_date()
    send = step["send"]
    channels = [send["channel"], *([send["fallback"]] if send.get("fallback") else [])]
    if "sms" in channels:
        _phones(ctx, go)
    email_ok = f"""regexp_full_match(trim("customer".email), {sql_literal(EMAIL_PATTERN)})"""
    usable = {
        "email": f"""(coalesce({email_ok}, FALSE)
                     AND coalesce("customer".email_consent, FALSE))""",
        "sms": """(p.e164 IS NOT NULL AND coalesce("customer".sms_consent, FALSE))""",
    }
    # Why a channel cannot be used, for the audience file when neither can.
    why = {
        "email": f"""CASE WHEN nullif(trim("customer".email), '') IS NULL
                              THEN 'email: no address'
                          WHEN NOT coalesce("customer".email_consent, FALSE)
                              THEN 'email: no consent'
                          WHEN NOT {email_ok} THEN 'email: invalid address' END""",
        "sms": """CASE WHEN nullif(trim("customer".phone), '') IS NULL THEN 'sms: no phone'
                       WHEN NOT coalesce("customer".sms_consent, FALSE) THEN 'sms: no consent'
                       WHEN p.e164 IS NULL THEN 'sms: invalid phone' END""",
    }
    address = {"email": 'trim("customer".email)', "sms": "p.e164"}
    choice = " ".join(f"WHEN {usable[c]} THEN '{c}'" for c in channels)
    to = " ".join(f"WHEN {usable[c]} THEN {address[c]}" for c in channels)
    reasons = ", ".join(why[c] for c in channels)
    bad_phone = (
        """coalesce("customer".sms_consent, FALSE)
           AND nullif(trim("customer".phone), '') IS NOT NULL AND p.e164 IS NULL"""
        if "sms" in channels
        else "FALSE"
    )
    bad_email = (
        f"""coalesce("customer".email_consent, FALSE)
           AND nullif(trim("customer".email), '') IS NOT NULL AND NOT {email_ok}"""
        if "email" in channels
        else "FALSE"
    )
    phones = 'LEFT JOIN _wf_phones p ON p.phone = "customer".phone' if "sms" in channels else ""
    limit = (ctx.program.data.get("messaging") or {}).get("max_per_week")
    week = f"CAST(date_trunc('week', {d}) AS DATE)"
    sent_this_week = f"""(SELECT customer_id, count(*) AS n FROM wf_log
        WHERE action = 'sent' AND run_on >= {week} AND run_on <= {d} GROUP BY customer_id)"""
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _wf_sent AS
        SELECT "member".customer_id, "member".entered_on,
               CASE {choice} END AS channel, CASE {to} END AS recipient,
               concat_ws('; ', {reasons}) AS why,
               {bad_phone} AS bad_phone, {bad_email} AS bad_email,
               coalesce(w.n, 0) AS week_sent, CAST(NULL AS VARCHAR) AS message_id
        FROM {go} AS "member" {_JOIN_CUSTOMER} {phones}
        LEFT JOIN {sent_this_week} w ON w.customer_id = "member".customer_id"""
    )
    ctx.q("CREATE OR REPLACE TEMP TABLE _wf_skip AS SELECT * FROM _wf_sent WHERE channel IS NULL")
    _log(ctx, wf, k, step_id, "skipped", "_wf_skip", detail="why")
    # Members who agreed to a channel whose address cannot be used are reported, whether
    # or not another channel reached them.
    for column, what in (
        ("bad_phone", "SMS but their phone number"),
        ("bad_email", "email but their address"),
    ):
        bad = int(ctx.scalar(f"SELECT count(*) FROM _wf_sent WHERE {column}"))
        if bad:
            ctx.warnings.append(
                f"workflow '{wf['id']}' step '{step_id}': {bad} member(s) agreed to {what} "
                f"is not valid (audiences/{wf['id']}.csv)"
            )
    if limit is not None:
        ctx.q(
            "CREATE OR REPLACE TEMP TABLE _wf_skip AS SELECT * FROM _wf_sent "
            "WHERE channel IS NOT NULL AND week_sent >= $limit",
            {"limit": int(limit)},
        )
        _log(ctx, wf, k, step_id, "skipped", "_wf_skip", detail="'weekly_limit'")
        ctx.q("DELETE FROM _wf_sent WHERE week_sent >= $limit", {"limit": int(limit)})
    ctx.q("DELETE FROM _wf_sent WHERE channel IS NULL")
    rows = ctx.q("SELECT customer_id, entered_on FROM _wf_sent").fetchall()
    if not rows:
        return
    ids = [message_id(wf["id"], step_id, c, e.isoformat()) for c, e in rows]
    ctx.q(
        """UPDATE _wf_sent SET message_id = m.message_id
        FROM (SELECT unnest(CAST($c AS VARCHAR[])) AS customer_id,
                     unnest(CAST($e AS DATE[])) AS entered_on,
                     unnest(CAST($m AS VARCHAR[])) AS message_id) m
        WHERE _wf_sent.customer_id = m.customer_id AND _wf_sent.entered_on = m.entered_on""",
        {"c": [r[0] for r in rows], "e": [r[1] for r in rows], "m": ids},
    )
    coupon = step.get("coupon")
    if coupon:
        _assign_coupons(ctx, wf, step_id, coupon["pool"])
    _log(
        ctx,
        wf,
        k,
        step_id,
        "sent",
        "_wf_sent",
        channel="channel",
        message_id="message_id",
        recipient="recipient",
    )


def _assign_coupons(ctx: RunContext, wf: dict, step_id: str, pool_id: str) -> None:
    """One code of the pool per message (its id is the request): all of them, or the run is
    refused (SPEC 7); a plan warns instead and assigns what the pool has."""
    con = ctx.con
    coupons.ensure_pool(con, ctx.program, pool_id, ctx.warnings)
    # Codes go out in the pool's order to members in customer id order.
    requests = (
        "SELECT customer_id, message_id AS request_id, "
        "row_number() OVER (ORDER BY customer_id, entered_on) AS ord FROM _wf_sent"
    )
    needed = int(
        ctx.scalar(
            f"""SELECT count(*) FROM ({requests}) r WHERE NOT EXISTS (
                SELECT 1 FROM coupon_codes h WHERE h.pool_id = $pool
                  AND h.assigned_for = r.request_id)""",
            {"pool": pool_id},
        )
    )
    free = coupons.pool_free(con, pool_id, ctx.as_of)
    ctx.count("workflows", f"{wf['id']}.coupons", needed)
    if needed > free:
        reason = (
            f"coupon pool '{pool_id}' has {free:,} free code(s) and workflow '{wf['id']}' "
            f"step '{step_id}' needs {needed:,}"
        )
        if not ctx.dry_run:
            raise Refused(reason + "; add codes to the pool (or raise its `count`) and run again")
        ctx.warnings.append(reason)
    valid_days = coupons.pool_config(ctx.program, pool_id).get("valid_days")
    coupons.assign_codes(con, pool_id, requests, ctx.as_of, valid_days=valid_days)


def _phones(ctx: RunContext, go: str) -> None:
    """`_wf_phones` (phone, e164): the E.164 form of the phones of `go` members who
    agreed to SMS, or NULL for a number that is not valid.

    Reading a number takes phonenumbers about 0.1 ms, so each number is read once for
    the region it is read in, and remembered in the state table `phone_numbers`."""
    from loyalty_cli.render import normalize_phone

    region = (ctx.program.data.get("messaging") or {}).get("default_region") or ""
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _wf_phones AS
        SELECT DISTINCT c.phone, n.e164, n.phone IS NOT NULL AS known
        FROM {go} g JOIN customers c USING (customer_id)
        LEFT JOIN phone_numbers n ON n.phone = c.phone AND n.region = $region
        WHERE c.phone IS NOT NULL AND coalesce(c.sms_consent, FALSE)""",
        {"region": region},
    )
    new = [r[0] for r in ctx.q("SELECT phone FROM _wf_phones WHERE NOT known").fetchall()]
    if not new:
        return
    ctx.q(
        """INSERT INTO phone_numbers
        SELECT unnest(CAST($raw AS VARCHAR[])), $region, unnest(CAST($e AS VARCHAR[]))""",
        {"raw": new, "region": region, "e": [normalize_phone(p, region or None) for p in new]},
    )
    ctx.q(
        """UPDATE _wf_phones SET e164 = n.e164 FROM phone_numbers n
        WHERE NOT _wf_phones.known AND n.phone = _wf_phones.phone AND n.region = $region""",
        {"region": region},
    )


def _award(ctx: RunContext, wf: dict, k: int, step_id: str, award: dict, go: str) -> None:
    """Credit the members of `go` with the award's points, available at once."""
    d = ctx.sql_date()
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _wf_award AS
        SELECT customer_id, entered_on, 'award' AS kind, CAST($points AS BIGINT) AS points,
               CAST($wf AS VARCHAR) AS rule_id, CAST($step AS VARCHAR) AS source_id,
               CAST({d} AS TIMESTAMP) + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND AS occurred_at,
               {d} AS earned_on, CAST(NULL AS DATE) AS pending_until,
               CAST(NULL AS VARCHAR) AS order_id, CAST($reason AS VARCHAR) AS reason
        FROM {go}""",
        {
            "points": int(award["points"]),
            "wf": wf["id"],
            "step": step_id,
            "reason": award["reason"],
        },
    )
    ledger.credit(ctx, "SELECT * EXCLUDE (entered_on) FROM _wf_award")
    n = _log(ctx, wf, k, step_id, "awarded", "_wf_award", detail="CAST(points AS VARCHAR)")
    ctx.count("workflows", f"{wf['id']}.points", int(award["points"]) * n)
    ctx.q("DROP TABLE _wf_award")


# --------------------------------------------------------------------------- the files


def render_messages(ctx: RunContext) -> None:
    """Render the messages the day's runs sent (the log's `sent` rows of the day), with the
    balances at the end of the run (`balances_now`), into `ctx.messages`.

    A message whose template fails for its member (a value the sample member of `validate`
    had and this member lacks) is not sent: its log row becomes `skipped` with the reason,
    its coupon code goes back to the pool, and the run warns. The rest of the run goes on.
    `plan` renders too, so it shows the same counts and warnings.
    """
    from loyalty_cli.render import make_environment

    ctx.messages = {}
    env = None
    failed: list[tuple[dict, str, str, str, str | None]] = []
    for wf in workflows_of(ctx):
        ids = step_ids(wf)
        for k, step in enumerate(wf["steps"]):
            if "send" not in step:
                continue
            if env is None:
                env = make_environment(ctx.program.template_dir)
            ctx.messages[(wf["id"], ids[k])] = _render_step(ctx, wf, k, ids[k], step, env, failed)
    if failed:
        _not_sent(ctx, failed)


def _not_sent(ctx: RunContext, failed: list[tuple[dict, str, str, str, str | None]]) -> None:
    """Record the messages whose template failed as skipped, with the template's message."""
    d = ctx.sql_date()
    ids = [message_id for _, _, message_id, _, _ in failed]
    ctx.q(
        f"""UPDATE wf_log SET action = 'skipped', channel = NULL, message_id = NULL,
               recipient = NULL, detail = f.why
        FROM (SELECT unnest(CAST($m AS VARCHAR[])) AS message_id,
                     unnest(CAST($w AS VARCHAR[])) AS why) f
        WHERE wf_log.message_id = f.message_id AND wf_log.run_on = {d}
          AND wf_log.action = 'sent'""",
        {"m": ids, "w": [why for _, _, _, why, _ in failed]},
    )
    # Back to the pool as it was: a generated code gets its end date when given out.
    dated = [
        p["id"]
        for p in (ctx.program.data.get("coupons") or {}).get("pools") or []
        if p.get("source") == "generate" and p.get("valid_days")
    ]
    ctx.q(
        """UPDATE coupon_codes SET assigned_to = NULL, assigned_for = NULL, assigned_on = NULL,
               valid_until = CASE WHEN list_contains(CAST($dated AS VARCHAR[]), pool_id)
                                  THEN NULL ELSE valid_until END
        WHERE assigned_for IN (SELECT unnest(CAST($m AS VARCHAR[])))""",
        {"m": ids, "dated": dated},
    )
    per_step: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for wf, step_id, _message_id, why, customer in failed:
        per_step.setdefault((wf["id"], step_id), []).append((str(customer), why))
        ctx.count("workflows", f"{wf['id']}.sent", -1)
        ctx.count("workflows", f"{wf['id']}.skipped", 1)
        if not ctx.counts["workflows"][f"{wf['id']}.sent"]:
            del ctx.counts["workflows"][f"{wf['id']}.sent"]
    for (wf_id, step_id), members in per_step.items():
        customer, why = members[0]
        ctx.warnings.append(
            f"workflow '{wf_id}' step '{step_id}': {len(members)} message(s) not sent, their "
            f"template failed for the member (customer '{customer}': {why}); see "
            f"audiences/{wf_id}.csv"
        )
    pools = {
        s["coupon"]["pool"]
        for wf, *_ in failed
        for s in wf["steps"]
        if s.get("coupon") and "send" in s
    }
    for pool in sorted(pools):
        ctx.counts["coupons"][f"{pool}.left"] = coupons.pool_free(ctx.con, pool, ctx.as_of)
    if any(k.endswith(".coupons") for k in ctx.counts.get("workflows", {})):
        given = dict(
            ctx.q(
                f"""SELECT l.workflow_id, count(*) FROM wf_log l JOIN coupon_codes c
                    ON c.assigned_for = l.message_id
                WHERE l.run_on = {d} AND l.action = 'sent' GROUP BY ALL"""
            ).fetchall()
        )
        for key in [k for k in ctx.counts["workflows"] if k.endswith(".coupons")]:
            ctx.counts["workflows"][key] = int(given.get(key.removesuffix(".coupons"), 0))


def write_outputs(ctx: RunContext, out: Path, customer: str) -> None:
    """audiences/<workflow>.csv for every workflow, and the message batches of its steps
    (rendered by render_messages).

    `customer` is the SQL of the customer_id cell (outputs.customer_cell)."""
    from loyalty_cli.engine import outputs
    from loyalty_cli.render import write_email_batch, write_sms_batch

    d = ctx.sql_date()
    for wf in workflows_of(ctx):
        # The workflow id is a checked id (letters, digits, '-', '_'), used as a file name.
        outputs.copy_csv(
            ctx,
            f"""SELECT {customer} AS customer_id, step_id AS step, action,
                       channel, message_id, detail
            FROM wf_log WHERE workflow_id = {sql_literal(wf["id"])} AND run_on = {d}
            ORDER BY wf_log.customer_id, entered_on, {log_order()}""",
            out / "audiences" / f"{wf['id']}.csv",
        )
        for step_id in step_ids(wf):
            folder = out / "messages" / wf["id"]
            for channel, messages in ctx.messages.get((wf["id"], step_id), {}).items():
                if not messages:  # a file per channel that has messages this day
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                if channel == "email":
                    write_email_batch(folder / f"{step_id}.email.jsonl", messages)
                else:
                    write_sms_batch(folder / f"{step_id}.sms.csv", messages)


def _render_step(
    ctx: RunContext,
    wf: dict,
    k: int,
    step_id: str,
    step: dict,
    env,
    failed: list[tuple[dict, str, str, str, str | None]],
) -> dict[str, list[dict]]:
    """The rendered messages of one send step by channel; failures are added to `failed`
    as (workflow, step id, message id, reason, customer id)."""
    from loyalty_cli.render import RenderError, member_context, render_message

    send = step["send"]
    messaging = ctx.program.data.get("messaging") or {}
    pool_id = (step.get("coupon") or {}).get("pool")
    discount = coupons.pool_config(ctx.program, pool_id).get("discount") if pool_id else None
    # The points that expire next: a lot's end, or all of them when `inactivity` comes
    # first (points awarded after it was reached go in the next run).
    expiring = (
        "b.next_expiry_on AS expiring_on, coalesce(b.next_expiry_points, 0) AS expiring_points"
    )
    inactive = ""
    inactive_sql = ledger.inactivity_days_sql(ctx)
    if inactive_sql is not None:
        d = ctx.sql_date()
        on = f"greatest(x.inactive_on, CAST({d} + 1 AS DATE))"
        first = f"""b.available > 0 AND x.inactive_on IS NOT NULL
                    AND (b.next_expiry_on IS NULL OR {on} <= b.next_expiry_on)"""
        expiring = f"""CASE WHEN {first} THEN {on} ELSE b.next_expiry_on END AS expiring_on,
            CASE WHEN {first} THEN b.available
                 ELSE coalesce(b.next_expiry_points, 0) END AS expiring_points"""
        inactive = f"LEFT JOIN ({inactive_sql}) x USING (customer_id)"
    rows = state.rows(
        ctx.con,
        f"""SELECT l.customer_id, l.channel, l.message_id, l.recipient, c.*,
                   b.available AS balance,
                   b.pending, b.tier AS tier_id, {expiring},
                   cc.code AS coupon_code, cc.valid_until AS coupon_valid_until,
                   i.trigger_ref, rd.reward_id AS redeemed_reward,
                   rc.code AS redeemed_code, rc.valid_until AS redeemed_valid_until,
                   rc.pool_id AS redeemed_pool
        FROM wf_log l
        JOIN cust_view c USING (customer_id)
        LEFT JOIN balances_now b USING (customer_id) {inactive}
        LEFT JOIN wf_instances i ON i.workflow_id = l.workflow_id
             AND i.customer_id = l.customer_id AND i.entered_on = l.entered_on
        LEFT JOIN coupon_codes cc ON cc.pool_id = $pool AND cc.assigned_for = l.message_id
        LEFT JOIN redemptions rd ON $redeemed AND rd.redemption_id = i.trigger_ref
             AND rd.customer_id = l.customer_id
        LEFT JOIN coupon_codes rc ON rc.assigned_for = $prefix || rd.redemption_id
             AND rc.code = rd.coupon_code
        WHERE l.workflow_id = $wf AND l.step = $k AND l.run_on = {ctx.sql_date()}
          AND l.action = 'sent'
        ORDER BY l.customer_id, l.entered_on""",
        {
            "wf": wf["id"],
            "k": k,
            "pool": pool_id,
            "redeemed": trigger_of(wf)[0] == "redemption",
            "prefix": REQUEST_PREFIX,
        },
    )
    basis = _tier_basis(ctx, [r["customer_id"] for r in rows]) if rows else {}
    extras = ((ctx.program.data.get("sources") or {}).get("customers") or {}).get("extra") or {}
    trigger, _ = trigger_of(wf)
    batches: dict[str, list[dict]] = {c: [] for c in (send["channel"], send.get("fallback")) if c}
    for row in rows:
        row.update(_next_tier(ctx, row["tier_id"], basis.get(row["customer_id"])))
        for name in extras:
            row[f"customer.{name}"] = row.get(name)
        row["coupon_discount"] = discount if row["coupon_code"] else None
        if trigger == "redemption":
            # Instances of states from before the id was kept hold the reward id.
            row["reward_id"] = row["redeemed_reward"] or row["trigger_ref"]
            if not row["coupon_code"] and row["redeemed_code"]:  # the code it got
                row["coupon_code"] = row["redeemed_code"]
                row["coupon_valid_until"] = row["redeemed_valid_until"]
                row["coupon_discount"] = coupons.pool_config(ctx.program, row["redeemed_pool"]).get(
                    "discount"
                )
        context = member_context(row, ctx.program.data)
        channel = row["channel"]
        try:
            parts = render_message(env, send["template"], channel, context)
        except RenderError as exc:
            diag = exc.diagnostic
            where = f"{Path(diag.path).name}:{diag.line}" if diag.path and diag.line else ""
            why = f"template: {where + ': ' if where else ''}{diag.message}"
            failed.append((wf, step_id, row["message_id"], why, row["customer_id"]))
            continue
        message = {"customer_id": row["customer_id"], "message_id": row["message_id"], **parts}
        if channel == "email":
            message.update({"to": row["recipient"], "from": messaging.get("from_email", "")})
        else:
            message.update({"to": row["recipient"], "sender": messaging.get("sms_sender", "")})
        batches[channel].append(message)
    return batches


def _tier_basis(ctx: RunContext, customers: list[str]) -> dict:
    """The tier basis of these members (money or points), for `points_to_next_tier`."""
    if not ctx.program.tiers:
        return {}
    from loyalty_cli.engine import tiers

    return dict(
        ctx.q(
            f"""SELECT customer_id, basis FROM ({tiers.basis_sql(ctx)}) b
            WHERE customer_id IN (SELECT unnest(CAST($c AS VARCHAR[])))""",
            {"c": customers},
        ).fetchall()
    )


def _next_tier(ctx: RunContext, tier: str | None, basis) -> dict:
    """next_tier_id and points_to_next_tier (what the basis still lacks) of a member."""
    levels = ctx.program.levels
    ids = [lvl["id"] for lvl in levels]
    if not ctx.program.tiers or tier not in ids or ids.index(tier) + 1 >= len(ids):
        return {"next_tier_id": None, "points_to_next_tier": None}
    nxt = levels[ids.index(tier) + 1]
    from decimal import Decimal

    lacking = Decimal(str(nxt.get("min", 0))) - Decimal(str(basis or 0))
    return {"next_tier_id": nxt["id"], "points_to_next_tier": max(lacking, Decimal(0))}
