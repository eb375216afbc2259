"""The data contract: canonical columns of each source and of the member view (SPEC 3, 4).

Shared by the expression checker (what a program may reference), the source loader
(what an export must provide) and the engine (what the tables hold).
"""

from __future__ import annotations

# Column types are the names used by ``sources.<name>.extra`` in a program.
TYPES = ("varchar", "integer", "decimal", "boolean", "date", "timestamp", "list")

# DuckDB type per column type. Money is DECIMAL(18, 2); points BIGINT.
DUCKDB_TYPES = {
    "varchar": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DECIMAL(18,2)",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "list": "VARCHAR[]",
    "json": "JSON",
}

# source name -> {canonical column: (type, required)}
SOURCE_COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "customers": {
        "customer_id": ("varchar", True),
        "email": ("varchar", False),
        "phone": ("varchar", False),
        "first_name": ("varchar", False),
        "last_name": ("varchar", False),
        "birth_date": ("date", False),
        "joined_at": ("timestamp", True),
        "email_consent": ("boolean", False),
        "sms_consent": ("boolean", False),
        "referred_by": ("varchar", False),
        "locale": ("varchar", False),
    },
    "orders": {
        "order_id": ("varchar", True),
        "customer_id": ("varchar", True),
        "ordered_at": ("timestamp", True),
        "total": ("decimal", True),
        "currency": ("varchar", False),
        "status": ("varchar", False),
        "channel": ("varchar", False),
    },
    "order_items": {
        "order_id": ("varchar", True),
        "sku": ("varchar", True),
        "quantity": ("integer", True),
        "unit_price": ("decimal", True),
        "category": ("varchar", False),
        "tags": ("list", False),
    },
    "returns": {
        "order_id": ("varchar", True),
        "returned_at": ("timestamp", True),
        "amount": ("decimal", True),
    },
    "events": {
        "event_id": ("varchar", False),
        "customer_id": ("varchar", True),
        "type": ("varchar", True),
        "occurred_at": ("timestamp", True),
        "properties": ("json", False),
    },
    "redemptions": {
        "redemption_id": ("varchar", True),
        "customer_id": ("varchar", True),
        "reward_id": ("varchar", True),
        "requested_at": ("timestamp", True),
    },
    "adjustments": {
        "adjustment_id": ("varchar", True),
        "customer_id": ("varchar", True),
        "points": ("integer", True),
        "reason": ("varchar", True),
        "created_at": ("timestamp", True),
    },
}

# Required sources; the others are optional.
REQUIRED_SOURCES = ("customers", "orders")

# Row name used in expressions -> source it comes from.
ROW_SOURCES = {
    "customer": "customers",
    "order": "orders",
    "item": "order_items",
    "event": "events",
}

# Member view as of the start of the run (SPEC 4).
MEMBER_COLUMNS: dict[str, str] = {
    "tier": "varchar",
    "balance": "integer",
    "pending": "integer",
    "days_since_last_order": "integer",
    "orders_count": "integer",
    "lifetime_spend": "decimal",
}
RFM_COLUMNS: dict[str, str] = {"r": "integer", "f": "integer", "m": "integer"}
WORKFLOW_COLUMNS: dict[str, str] = {"ordered_since_entry": "boolean", "days_since_entry": "integer"}

# Which rows an expression may use, by the rule's `on`.
ROWS_FOR_ON = {
    "order": ("order", "customer"),
    "order_item": ("item", "order", "customer"),
    "event": ("event", "customer"),
}
