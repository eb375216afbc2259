"""`loyalty explain CUSTOMER_ID`: everything the state knows about one member, with causes."""

from __future__ import annotations

from loyalty_cli import state
from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError
from loyalty_cli.engine.workflows import log_order
from loyalty_cli.state import Connection


def explain(con: Connection, customer_id: str) -> dict:
    """The member's profile, balances, ledger, lots, tiers, segments, badges, redemptions,
    workflow steps and orders."""
    profile = state.rows(
        con, "SELECT * EXCLUDE (extra) FROM customers WHERE customer_id = ?", [customer_id]
    )
    if not profile:
        raise LoyaltyError(
            Diagnostic(
                code="D607",
                message=f"no customer '{customer_id}' in the state",
                hint="Customer ids are text and case-sensitive; check the export.",
            ),
            ExitCode.INVALID,
        )
    p = [customer_id]
    balances = state.rows(
        con,
        """SELECT coalesce(sum(CASE WHEN status = 'available' THEN remaining END), 0) AS available,
                  coalesce(sum(CASE WHEN status = 'pending' THEN remaining END), 0) AS pending
           FROM lots WHERE customer_id = ?""",
        p,
    )[0]
    return {
        "customer": profile[0],
        "balances": balances,
        "tier": next(
            iter(
                state.rows(
                    con, "SELECT tier, renewed_on, since FROM tiers WHERE customer_id = ?", p
                )
            ),
            None,
        ),
        "ledger": state.rows(
            con,
            """SELECT entry_id, run_on, kind, points, pending, rule_id, source_id, occurred_on,
                      reason, shortfall, lot_id
               FROM ledger WHERE customer_id = ? ORDER BY entry_id""",
            p,
        ),
        "lots": state.rows(
            con,
            """SELECT lot_id, kind, rule_id, order_id, earned_on, available_on, expires_on,
                      amount, remaining, status
               FROM lots WHERE customer_id = ? ORDER BY earned_on, lot_id""",
            p,
        ),
        "tier_changes": state.rows(
            con,
            """SELECT effective_on, from_tier, to_tier, change, basis FROM tier_changes
               WHERE customer_id = ? ORDER BY effective_on""",
            p,
        ),
        "segments": state.rows(
            con,
            """SELECT segment_id, grp AS "group", r, f, m, value, as_of FROM segment_members
               WHERE customer_id = ? ORDER BY segment_id""",
            p,
        ),
        "segment_changes": state.rows(
            con,
            """SELECT on_day, segment_id, grp AS "group", change FROM segment_changes
               WHERE customer_id = ? ORDER BY on_day, segment_id""",
            p,
        ),
        "badges": state.rows(
            con,
            "SELECT badge, bonus_id, period, earned_on FROM badges WHERE customer_id = ? "
            "ORDER BY earned_on",
            p,
        ),
        "redemptions": state.rows(
            con,
            """SELECT redemption_id, reward_id, requested_at, status, reason, coupon_code, cost
               FROM redemptions WHERE customer_id = ? ORDER BY requested_at, redemption_id""",
            p,
        ),
        # What the workflows did with the member, run by run (the step by its position;
        # the coupon given with a message is the code assigned for its message id).
        "workflow_steps": state.rows(
            con,
            f"""SELECT l.run_on, l.workflow_id, l.entered_on, l.step + 1 AS step, l.step_id,
                      l.action, l.channel, l.message_id, l.detail, c.code AS coupon_code
               FROM wf_log l
               LEFT JOIN coupon_codes c ON c.assigned_for = l.message_id
               WHERE l.customer_id = ?
               ORDER BY l.run_on, l.workflow_id, l.entered_on, {log_order("l")}""",
            p,
        ),
        "orders": state.rows(
            con,
            """SELECT order_id, day, total, status, returned, granted, reversed, release_on,
                      cancelled_on
               FROM orders WHERE customer_id = ? ORDER BY ordered_at, order_id""",
            p,
        ),
    }
