"""Realistic, reproducible shop exports: sample data for `loyalty init`, the demo,
tests and the benchmark.

Everything is generated set-based in DuckDB from `range()`; every random choice is
``u(stream, a, b, c, d)``, the seeded ``hash()`` of integers mapped to (0, 1). The same
parameters therefore give byte-identical files on every run, thread count and machine
(with the same DuckDB version), and no row depends on how many rows came before it.

Activity is modelled per *cell* (customer, day): how many orders and events a customer
has on a day depends only on the seed, the customer and the day. That is what lets
`generate_day` produce one night's delta, for a day inside the period or right after it,
that agrees row for row with a full `generate` over the same parameters, without
generating the whole history.

Shape of the data (SPEC 3):
- customers: ids in join order (`C000001` joined first); 20 % joined before the period;
  some emails missing, phones in several Polish formats (some without +48, a few
  invalid), names with diacritics, a few Feb 29 birthdays, ~5 % referred by an earlier
  customer, pl-PL mostly and en-GB some. Addresses use reserved example domains.
- orders: heavy-tailed activity (7 % never order, 23 % order once, the rest at a
  lognormal rate), the first order often on the join day after signing up; shop hours
  07:00-23:00 (stores 10:00-20:00); ~2 % cancelled; totals equal the sum of the items.
- returns: of `returns_share` of completed orders, 1 to ~30 days later: full, or
  partial by item lines (several rows per order); only those dated inside the period.
- events: ten behavioural types, 06:00-24:00, with a small JSON object of properties.
- redemptions and adjustments: a few per hundred customers.
Local times avoid 02:00-03:00, so no timestamp falls in a DST gap or overlap.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

DEFAULT_REWARD_IDS = ("discount-20", "free-shipping", "spa-weekend", "unknown-gift")
FORMATS = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}
# Sources a nightly delta (or a daily split) holds per day; customers are always whole.
DAILY_SOURCES = ("orders", "order_items", "returns", "events", "redemptions", "adjustments")

# Presets: `make demo` / `loyalty init` (a few hundred KB) and the benchmark.
DEMO: dict[str, Any] = {
    "customers": 300,
    "days": 548,
    "orders_per_customer": 5.0,
    "events_per_customer": 8.0,
}
BENCH: dict[str, Any] = {"customers": 100_000, "days": 730}

MEMORY_LIMIT = "2GB"  # the benchmark size spills past this rather than grow
THREADS: int | None = None  # DuckDB's default (all cores); output does not depend on it

# --- model constants -------------------------------------------------------------------
SHARE_BEFORE_START = 0.2  # customers who joined before the period
HISTORY_BEFORE_START = 730  # ... up to this many days before it
SHARE_BROWSERS = 0.07  # never order
SHARE_ONE_TIMERS = 0.23  # exactly one order
SHARE_FIRST_ON_JOIN = 0.5  # regular customers joining in the period: first order that day
SIGMA_ORDERS = 1.1  # lognormal spread of order activity between customers, mean 1 ...
CAP_ORDERS = 15.0  # ... capped: the busiest order ~0.5 times a day
SIGMA_EVENTS = 1.0  # the same for events (correlated with orders)
CAP_EVENTS = 30.0
CANCELLED_SHARE = 0.02
CATALOG_SIZE = 2400
MAX_RETURN_DELAY = 31  # days; a nightly delta looks back this far for returns

FEMALE_FIRST_PL = (
    "Anna Maria Katarzyna Małgorzata Agnieszka Barbara Ewa Krystyna Magdalena Joanna "
    "Aleksandra Zofia Monika Natalia Julia Zuzanna Łucja Weronika Karolina Marta Beata "
    "Dorota Jadwiga Halina Elżbieta Grażyna Iwona Żaneta"
).split()
MALE_FIRST_PL = (
    "Jan Piotr Krzysztof Andrzej Tomasz Paweł Michał Marcin Łukasz Grzegorz Jakub "
    "Mateusz Adam Wojciech Kacper Szymon Bartłomiej Jerzy"
).split()
SURNAMES_PL = (  # (male, female)
    ("Nowak", "Nowak"),
    ("Kowalski", "Kowalska"),
    ("Wiśniewski", "Wiśniewska"),
    ("Wójcik", "Wójcik"),
    ("Kowalczyk", "Kowalczyk"),
    ("Kamiński", "Kamińska"),
    ("Lewandowski", "Lewandowska"),
    ("Zieliński", "Zielińska"),
    ("Szymański", "Szymańska"),
    ("Woźniak", "Woźniak"),
    ("Dąbrowski", "Dąbrowska"),
    ("Kozłowski", "Kozłowska"),
    ("Jankowski", "Jankowska"),
    ("Mazur", "Mazur"),
    ("Kwiatkowski", "Kwiatkowska"),
    ("Krawczyk", "Krawczyk"),
    ("Piotrowski", "Piotrowska"),
    ("Grabowski", "Grabowska"),
    ("Pawłowski", "Pawłowska"),
    ("Michalski", "Michalska"),
    ("Król", "Król"),
    ("Wieczorek", "Wieczorek"),
    ("Jabłoński", "Jabłońska"),
    ("Wróbel", "Wróbel"),
    ("Żak", "Żak"),
    ("Sęk", "Sęk"),
    ("Gołębiowski", "Gołębiowska"),
)
FEMALE_FIRST_EN = "Olivia Emma Amelia Isla Ava Sophie Grace Chloë Charlotte Renée".split()
MALE_FIRST_EN = "Oliver George Harry Jack Noah Leo Arthur".split()
SURNAMES_EN = "Smith Jones Taylor Brown Williams Wilson Johnson Davies Evans O'Brien".split()
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "poczta.example", "mail.example")
MOBILE_PREFIXES = (
    "501 502 504 505 510 512 530 533 535 600 601 602 603 604 605 660 661 662 665 668 "
    "690 691 692 693 695 697 698 720 721 723 724 730 731 733 735 780 781 782 783 784 "
    "785 790 791 792 793 794 797 880 881 882 883 884 885 886 887 888 889"
).split()
# (category, sku prefix, lowest price, highest price) in whole currency units
CATEGORIES = (
    ("dresses", "DRS", 100, 500),
    ("shoes", "SHO", 150, 700),
    ("bags", "BAG", 100, 900),
    ("cosmetics", "COS", 20, 200),
    ("accessories", "ACC", 20, 150),
    ("tops", "TOP", 40, 200),
    ("trousers", "TRS", 90, 350),
    ("jewellery", "JWL", 50, 600),
    ("outerwear", "OUT", 200, 1300),
    ("lingerie", "LNG", 40, 250),
)
# event type -> share per mille
EVENT_TYPES = (
    ("page_view", 420),
    ("email_open", 140),
    ("link_click", 80),
    ("add_to_cart", 100),
    ("product_like", 60),
    ("form_fill", 10),
    ("article_read", 40),
    ("newsletter_read", 60),
    ("cart_abandoned", 89),
    ("unsubscribe", 1),
)
EMAIL_EVENT_TYPES = ("email_open", "newsletter_read", "link_click")
FORMS = ("survey", "size-profile", "contest", "stylist-booking")
ADJUSTMENTS = (  # (reason, points)
    ("goodwill: late delivery", 100),
    ("complaint: damaged parcel", 200),
    ("correction: duplicate points", -150),
    ("migration: points from the old paper card", 500),
    ("goodwill: birthday gesture", 50),
    ("correction: test order", -100),
)


@dataclass(frozen=True)
class _Plan:
    """The parameters of one generation and the constants derived from them."""

    out_dir: Path
    customers: int
    start: date
    days: int
    seed: int
    orders_per_customer: float
    items_per_order: float
    events_per_customer: float
    returns_share: float
    redemptions: bool
    reward_ids: tuple[str, ...]
    currency: str
    fmt: str

    @property
    def mean_span(self) -> float:
        """Expected days a customer can be active in the period (join day to the end)."""
        b = SHARE_BEFORE_START
        return b * self.days + (1 - b) * (self.days + 1) / 2

    @property
    def regular_rate(self) -> float:
        """Orders over a mean span of a regular customer with activity weight 1, chosen so
        that customers order `orders_per_customer` times on average."""
        share_regular = 1 - SHARE_BROWSERS - SHARE_ONE_TIMERS
        on_join = SHARE_FIRST_ON_JOIN * (1 - SHARE_BEFORE_START)
        return max(0.0, (self.orders_per_customer - SHARE_ONE_TIMERS) / share_regular - on_join)

    def path(self, name: str, day: date | None = None) -> Path:
        suffix = f"-{day.isoformat()}" if day else ""
        return self.out_dir / f"{name}{suffix}.{FORMATS[self.fmt]}"


def generate(
    out_dir: Path,
    *,
    customers: int = 300,
    start: date = date(2025, 1, 1),
    days: int = 548,
    seed: int = 7,
    orders_per_customer: float = 10.0,
    items_per_order: float = 2.5,
    events_per_customer: float = 100.0,
    returns_share: float = 0.05,
    redemptions: bool = True,
    reward_ids: Sequence[str] = DEFAULT_REWARD_IDS,
    currency: str = "PLN",
    fmt: str = "csv",
    split_daily_from: date | None = None,
) -> dict[str, int]:
    """Write a shop's exports over `days` days from `start` into `out_dir`.

    Files: customers, orders, order_items, returns, events and, with `redemptions`,
    redemptions and adjustments (`.csv`, `.parquet` or `.jsonl` by `fmt`). With
    `split_daily_from`, rows dated from that day on go to one file per source and day
    (`orders-2026-06-01.csv`), the way nightly exports accumulate; the rest stay in the
    main files. Returns the row count of each file written, by file name.
    """
    plan = _plan(
        out_dir=Path(out_dir), customers=customers, start=start, days=days, seed=seed,
        orders_per_customer=orders_per_customer, items_per_order=items_per_order,
        events_per_customer=events_per_customer, returns_share=returns_share,
        redemptions=redemptions, reward_ids=tuple(reward_ids), currency=currency, fmt=fmt,
    )  # fmt: skip
    with _session(plan) as con:
        _customers(con, plan)
        _orders(con, plan, 0, days)
        _returns(con, plan)
        _redemptions_and_adjustments(con, plan)
        customers_sql = _customers_sql(days)
        counts = {plan.path("customers").name: _write(con, plan, customers_sql, "customers")}
        split = days if split_daily_from is None else (split_daily_from - start).days
        split = min(max(split, 0), days)
        counts |= _write_days(con, plan, 0, split, None)
        for day in range(split, days):
            counts |= _write_days(con, plan, day, day + 1, start + timedelta(days=day))
    return counts


def generate_day(
    out_dir: Path,
    day: date,
    *,
    customers: int,
    seed: int = 7,
    start: date = date(2025, 1, 1),
    days: int = 548,
    orders_per_customer: float = 10.0,
    items_per_order: float = 2.5,
    events_per_customer: float = 100.0,
    returns_share: float = 0.05,
    redemptions: bool = True,
    reward_ids: Sequence[str] = DEFAULT_REWARD_IDS,
    currency: str = "PLN",
    fmt: str = "csv",
) -> dict[str, int]:
    """Write one night's delta for `day`: its orders, items, returns and events (and
    redemptions and adjustments), plus the customers who joined by the end of `day`.

    With the parameters of a `generate` call the rows are exactly that generation's rows
    of `day`; a day after the period continues it (new orders, events and returns of
    recent orders), which is what the nightly benchmark runs on.
    """
    plan = _plan(
        out_dir=Path(out_dir), customers=customers, start=start, days=days, seed=seed,
        orders_per_customer=orders_per_customer, items_per_order=items_per_order,
        events_per_customer=events_per_customer, returns_share=returns_share,
        redemptions=redemptions, reward_ids=tuple(reward_ids), currency=currency, fmt=fmt,
    )  # fmt: skip
    d = (day - start).days
    if d < 0:
        raise ValueError(f"day {day} is before the start of the data ({start})")
    with _session(plan) as con:
        _customers(con, plan)
        _orders(con, plan, max(0, d - MAX_RETURN_DELAY - 1), d + 1)
        _returns(con, plan)
        _redemptions_and_adjustments(con, plan)
        customers_sql = _customers_sql(d)
        counts = {plan.path("customers").name: _write(con, plan, customers_sql, "customers")}
        counts |= _write_days(con, plan, d, d + 1, None)
    return counts


def _plan(**params: object) -> _Plan:
    """Check the parameters and create the output folder."""
    plan = _Plan(**params)  # type: ignore[arg-type]
    if plan.customers < 1 or plan.days < 1:
        raise ValueError("customers and days must be at least 1")
    if plan.orders_per_customer < 0 or plan.events_per_customer < 0:
        raise ValueError("orders_per_customer and events_per_customer must not be negative")
    if plan.items_per_order < 1:
        raise ValueError("items_per_order must be at least 1")
    if not 0 <= plan.returns_share <= 1:
        raise ValueError("returns_share must be between 0 and 1")
    if plan.fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}")
    if not plan.reward_ids:
        raise ValueError("reward_ids must not be empty")
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    return plan


@contextmanager
def _session(plan: _Plan) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with the random and time macros of one plan and the catalog,
    spilling to a private temporary folder so the benchmark size stays within
    `MEMORY_LIMIT`."""
    tmp = tempfile.mkdtemp(prefix="loyalty-sampledata-")
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": MEMORY_LIMIT,
        "temp_directory": tmp,
    }
    if THREADS:
        config["threads"] = THREADS
    con = duckdb.connect(config=config)
    try:
        con.execute("SET enable_progress_bar = false")
        epoch_day = (plan.start - date(1970, 1, 1)).days
        con.execute(
            f"""
            CREATE MACRO u(s, a, b, c, d) AS
              ((hash({int(plan.seed)}::BIGINT, s::BIGINT, a::BIGINT, b::BIGINT,
                     c::BIGINT, d::BIGINT) >> 11)::DOUBLE + 0.5) / 9007199254740992.0;
            -- geometric count with mean q / (1 - q), capped: how many of something in a cell
            CREATE MACRO geo(x, q, cap) AS
              CASE WHEN x < q THEN least(cap, floor(ln(x) / ln(q)))::BIGINT ELSE 0 END;
            CREATE MACRO ts(day, secs) AS
              make_timestamp(({epoch_day} + day::BIGINT) * 86400000000 + secs::BIGINT * 1000000);
            CREATE MACRO dt(day) AS DATE '{plan.start.isoformat()}' + day::INTEGER;
            CREATE MACRO money(cents) AS (cents::BIGINT * 0.01)::DECIMAL(18, 2);
            CREATE MACRO pick(xs, x) AS xs[1 + floor(x * len(xs))::BIGINT];
            """
        )
        _products(con)
        yield con
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


def _products(con: duckdb.DuckDBPyConnection) -> None:
    """The catalog: a fixed set of products with category, price and tags. Low numbers are
    the popular ones (items pick them with a skewed draw)."""
    cats = _sql_list([c[0] for c in CATEGORIES])
    prefixes = _sql_list([c[1] for c in CATEGORIES])
    lows = "[" + ", ".join(str(c[2]) for c in CATEGORIES) + "]"
    highs = "[" + ", ".join(str(c[3]) for c in CATEGORIES) + "]"
    con.execute(
        f"""
        CREATE TABLE products AS
        WITH p AS (
          SELECT p, 1 + floor(u(40, p, 0, 0, 0) * {len(CATEGORIES)})::BIGINT AS c,
                 u(42, p, 0, 0, 0) < 0.15 AS sale
          FROM range({CATALOG_SIZE}) t(p)
        ), priced AS (
          SELECT *, ({lows}[c] + 10 * floor(u(41, p, 0, 0, 0)
                     * ({highs}[c] - {lows}[c]) / 10)::BIGINT) * 100 - 1 AS list_cents
          FROM p
        )
        SELECT p,
          {prefixes}[c] || '-' || printf('%05d', p) AS sku,
          {cats}[c] AS category,
          CASE WHEN sale THEN list_cents * 7 // 1000 * 100 + 99 ELSE list_cents END AS cents,
          nullif(concat_ws(';',
            CASE WHEN u(43, p, 0, 0, 0) < 0.2 THEN 'new' END,
            CASE WHEN sale THEN 'sale' END,
            CASE WHEN u(44, p, 0, 0, 0) < 0.08 THEN 'eco' END,
            CASE WHEN p < {CATALOG_SIZE // 100} THEN 'bestseller' END), '') AS tags
        FROM priced
        """
    )


def _customers(con: duckdb.DuckDBPyConnection, plan: _Plan) -> None:
    """Customers with join day and activity; numbered in join order."""
    s_o, s_e = SIGMA_ORDERS, SIGMA_EVENTS
    per_day_o = plan.regular_rate / plan.mean_span / _capped_lognormal_mean(s_o, CAP_ORDERS)
    per_day_e = plan.events_per_customer / plan.mean_span / _capped_lognormal_mean(s_e, CAP_EVENTS)
    con.execute(
        f"""
        CREATE TABLE cust AS
        WITH raw AS (
          SELECT i,
            CASE WHEN u(1, i, 0, 0, 0) < {SHARE_BEFORE_START}
                 THEN -1 - floor(u(2, i, 0, 0, 0) * {HISTORY_BEFORE_START})::BIGINT
                 ELSE floor(u(2, i, 0, 0, 0) * {plan.days})::BIGINT END AS join_day,
            25200 + floor(u(3, i, 0, 0, 0) * 54000)::BIGINT AS join_secs,
            u(4, i, 0, 0, 0) AS u_kind,
            sqrt(-2 * ln(u(5, i, 0, 0, 0))) * cos(2 * pi() * u(6, i, 0, 0, 0)) AS z1,
            sqrt(-2 * ln(u(7, i, 0, 0, 0))) * cos(2 * pi() * u(8, i, 0, 0, 0)) AS z2
          FROM range(1, {plan.customers + 1}) t(i)
        ), shaped AS (
          SELECT *,
            row_number() OVER (ORDER BY join_day, join_secs, i) AS num,
            greatest(join_day, 0) AS first_day,
            {plan.days} - greatest(join_day, 0) AS span,
            CASE WHEN u_kind < {SHARE_BROWSERS} THEN 0
                 WHEN u_kind < {SHARE_BROWSERS + SHARE_ONE_TIMERS} THEN 1 ELSE 2 END AS kind,
            least(exp({s_o} * z1 - {s_o**2 / 2}), {CAP_ORDERS}) AS w,
            least(exp({s_e} * (0.6 * z1 + 0.8 * z2) - {s_e**2 / 2}), {CAP_EVENTS}) AS we,
            u(12, i, 0, 0, 0) >= 0.05 AS has_email
          FROM raw
        )
        SELECT *,
          'C' || printf('%06d', num) AS customer_id,
          CASE WHEN join_day >= 0 AND u(9, i, 0, 0, 0) < 0.7 THEN join_day
               ELSE first_day + floor(u(10, i, 0, 0, 0) * span)::BIGINT END AS one_day,
          kind = 2 AND join_day >= 0 AND u(11, i, 0, 0, 0) < {SHARE_FIRST_ON_JOIN} AS first_on_join,
          {per_day_o!r} * w AS lam_o,
          {per_day_e!r} * we AS lam_e
        FROM shaped
        """
    )


def _capped_lognormal_mean(sigma: float, cap: float) -> float:
    """E[min(W, cap)] for W = exp(sigma Z - sigma^2 / 2), Z standard normal (E[W] = 1), so
    that capping the busiest customers does not lower the requested rates."""

    def phi(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    z_cap = (math.log(cap) + sigma**2 / 2) / sigma
    return phi(z_cap - sigma) + cap * (1 - phi(z_cap))


def _name_sql() -> str:
    """first_name / last_name by locale and gender."""
    f_pl, m_pl = _sql_list(FEMALE_FIRST_PL), _sql_list(MALE_FIRST_PL)
    f_en, m_en = _sql_list(FEMALE_FIRST_EN), _sql_list(MALE_FIRST_EN)
    sur_m = _sql_list([m for m, _ in SURNAMES_PL])
    sur_f = _sql_list([f for _, f in SURNAMES_PL])
    sur_en = _sql_list(SURNAMES_EN)
    return f"""
      CASE WHEN en THEN CASE WHEN female THEN pick({f_en}, u(14, i, 0, 0, 0))
                             ELSE pick({m_en}, u(14, i, 0, 0, 0)) END
           WHEN female THEN pick({f_pl}, u(14, i, 0, 0, 0))
           ELSE pick({m_pl}, u(14, i, 0, 0, 0)) END AS first_name,
      CASE WHEN en THEN pick({sur_en}, u(15, i, 0, 0, 0))
           WHEN female THEN pick({sur_f}, u(15, i, 0, 0, 0))
           ELSE pick({sur_m}, u(15, i, 0, 0, 0)) END AS last_name"""


def _ascii(expr: str) -> str:
    return (
        f"regexp_replace(lower(strip_accents(replace(replace({expr}, 'Ł', 'L'), 'ł', 'l'))),"
        " '[^a-z]', '', 'g')"
    )


def _customers_sql(last_join_day: int) -> str:
    """The customers export: those who joined by `last_join_day`, in join order."""
    prefixes = _sql_list(MOBILE_PREFIXES)
    domains = _sql_list(EMAIL_DOMAINS)
    first, last = _ascii("first_name"), _ascii("last_name")
    return f"""
    WITH base AS (
      SELECT *, u(13, i, 0, 0, 0) < 0.08 AS en, u(16, i, 0, 0, 0) < 0.75 AS female
      FROM cust
    ), named AS (
      SELECT *, {_name_sql()},
        pick({prefixes}, u(20, i, 0, 0, 0)) AS ph_p,
        printf('%06d', floor(u(21, i, 0, 0, 0) * 1000000)::BIGINT) AS ph_r,
        u(22, i, 0, 0, 0) AS ph_u, u(23, i, 0, 0, 0) AS em_u, u(24, i, 0, 0, 0) AS bd_u
      FROM base
    )
    SELECT customer_id,
      CASE WHEN NOT has_email THEN NULL
           ELSE CASE WHEN em_u < 0.45 THEN {first} || '.' || {last} || num
                     WHEN em_u < 0.70 THEN {first} || {last} || num
                     WHEN em_u < 0.85 THEN left({first}, 1) || {last} || num
                     ELSE {first} || '_' || num END
                || '@' || pick({domains}, u(25, i, 0, 0, 0)) END AS email,
      CASE WHEN ph_u < 0.07 THEN NULL
           WHEN ph_u < 0.55 THEN '+48 ' || ph_p || ' ' || left(ph_r, 3) || ' ' || right(ph_r, 3)
           WHEN ph_u < 0.80 THEN ph_p || ph_r
           WHEN ph_u < 0.88 THEN '+48' || ph_p || ph_r
           WHEN ph_u < 0.97 THEN ph_p || '-' || left(ph_r, 3) || '-' || right(ph_r, 3)
           WHEN ph_u < 0.985 THEN ph_p || left(ph_r, 3)
           ELSE '000 000 000' END AS phone,
      first_name, last_name,
      CASE WHEN bd_u < 0.15 THEN NULL
           WHEN bd_u < 0.16 THEN make_date(1976 + 4 * floor(u(26, i, 0, 0, 0) * 7)::BIGINT, 2, 29)
           ELSE dt(-6570 - floor(u(26, i, 0, 0, 0) * 18980)::BIGINT) END AS birth_date,
      ts(join_day, join_secs) AS joined_at,
      u(27, i, 0, 0, 0) < 0.7 AS email_consent,
      u(28, i, 0, 0, 0) < 0.4 AS sms_consent,
      CASE WHEN num > 1 AND u(29, i, 0, 0, 0) < 0.05
           THEN 'C' || printf('%06d', 1 + floor(u(30, i, 0, 0, 0) * (num - 1))::BIGINT)
           END AS referred_by,
      CASE WHEN en THEN 'en-GB' ELSE 'pl-PL' END AS locale
    FROM named
    WHERE join_day <= {last_join_day}
    ORDER BY num
    """


def _orders(con: duckdb.DuckDBPyConnection, plan: _Plan, day_from: int, day_to: int) -> None:
    """Orders and their items of the days [day_from, day_to), as tables `ord` and `items`."""
    q_items = (plan.items_per_order - 1) / plan.items_per_order
    con.execute(
        f"""
        CREATE OR REPLACE TABLE ord0 AS
        WITH cells AS (
          SELECT c.i, c.num, c.customer_id, c.join_day, c.join_secs, d.day,
            CASE WHEN c.kind = 2 THEN geo(u(50, c.i, d.day, 0, 0), c.lam_o / (1 + c.lam_o), 20)
                 ELSE 0 END
            + CASE WHEN c.first_on_join AND d.day = c.join_day THEN 1 ELSE 0 END
            + CASE WHEN c.kind = 1 AND d.day = c.one_day THEN 1 ELSE 0 END AS n
          FROM cust c, range({day_from}, {day_to}) d(day)
          WHERE d.day >= c.first_day AND c.kind > 0
        ), o AS (
          SELECT cells.* EXCLUDE (n), k, u(51, i, day, k, 0) AS ch_u
          FROM cells, range(cells.n) r(k)
          WHERE n > 0
        ), timed AS (
          SELECT *,
            CASE WHEN ch_u < 0.55 THEN 'web'
                 WHEN ch_u < 0.85 OR day = join_day THEN 'app' ELSE 'store' END AS channel,
            CASE WHEN day = join_day
                   THEN join_secs + 60 + floor(u(52, i, day, k, 0) * (82740 - join_secs))
                 WHEN ch_u >= 0.85 THEN 36000 + floor(u(52, i, day, k, 0) * 36000)
                 ELSE 25200 + floor(sqrt(u(52, i, day, k, 0)) * 57600) END::BIGINT AS secs,
            CASE WHEN u(53, i, day, k, 0) < {CANCELLED_SHARE} THEN 'cancelled'
                 ELSE 'completed' END AS status,
            1 + geo(u(54, i, day, k, 0), {q_items}, 14) AS m
          FROM o
        )
        , numbered AS (
          SELECT *, row_number() OVER (PARTITION BY day ORDER BY secs, num, k) AS seq
          FROM timed
        )
        SELECT *, 'O' || strftime(dt(day), '%Y%m%d') || '-' || printf('%05d', seq) AS order_id
        FROM numbered
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE items AS
        WITH lines AS (
          SELECT o.order_id, o.i, o.day, o.k, o.seq, l AS line,
            floor({CATALOG_SIZE} * u(60, o.i, o.day, o.k, l) * u(61, o.i, o.day, o.k, l))::BIGINT
              AS p,
            CASE WHEN u(62, o.i, o.day, o.k, l) < 0.82 THEN 1
                 WHEN u(62, o.i, o.day, o.k, l) < 0.96 THEN 2 ELSE 3 END AS quantity
          FROM ord0 o, range(o.m) r(l)
        )
        SELECT lines.*, p.sku, p.category, p.tags, p.cents AS price_cents
        FROM lines JOIN products p USING (p)
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE ord AS
        SELECT ord0.*, t.total_cents
        FROM ord0 JOIN (SELECT order_id, sum(quantity * price_cents) AS total_cents
                       FROM items GROUP BY order_id) t USING (order_id)
        """
    )


def _returns(con: duckdb.DuckDBPyConnection, plan: _Plan) -> None:
    """Returns of the orders in `ord` (table `ret`, with the day each is dated)."""
    con.execute(
        f"""
        CREATE OR REPLACE TABLE ret AS
        WITH r AS (
          SELECT order_id, i, day, k, seq, m, total_cents,
            m = 1 OR u(71, i, day, k, 0) < 0.5 AS whole,
            floor(u(72, i, day, k, 0) * m)::BIGINT AS chosen,
            1 + floor(29 * u(73, i, day, k, 0) * u(73, i, day, k, 0))::BIGINT AS delay,
            28800 + floor(u(74, i, day, k, 0) * 43200)::BIGINT AS secs
          FROM ord
          WHERE status = 'completed' AND u(70, i, day, k, 0) < {plan.returns_share}
        ), rows AS (
          SELECT order_id, day, seq, 0 AS line, day + delay AS rday, secs, total_cents AS cents
          FROM r WHERE whole
          UNION ALL
          SELECT r.order_id, r.day, r.seq, it.line,
            r.day + r.delay + floor(u(75, r.i, r.day, r.k, it.line) * 3)::BIGINT,
            r.secs + 60 * it.line,
            (1 + floor(u(76, r.i, r.day, r.k, it.line) * it.quantity)::BIGINT) * it.price_cents
          FROM r JOIN items it USING (order_id)
          WHERE NOT r.whole AND (it.line = r.chosen OR u(77, r.i, r.day, r.k, it.line) < 0.5)
        )
        SELECT * FROM rows
        """
    )


def _redemptions_and_adjustments(con: duckdb.DuckDBPyConnection, plan: _Plan) -> None:
    """Reward requests of engaged customers and a handful of manual point adjustments
    (tables `red` and `adj`), placed inside each customer's time in the period."""
    reward = _weighted_pick(
        "x", plan.reward_ids, [1 / (j + 1) for j in range(len(plan.reward_ids))]
    )
    adj_share = min(1.0, max(0.01, 8 / plan.customers))
    reasons = _sql_list([r for r, _ in ADJUSTMENTS])
    points = "[" + ", ".join(str(p) for _, p in ADJUSTMENTS) + "]"
    timed = """
      CASE WHEN day = join_day THEN join_secs + 60 + floor(ut * (82740 - join_secs))
           ELSE {lo} + floor(ut * {width}) END::BIGINT AS secs"""
    con.execute(
        f"""
        CREATE OR REPLACE TABLE red AS
        WITH c AS (
          SELECT *, CASE WHEN kind = 2 AND u(80, i, 0, 0, 0) < least(0.6, 0.08 * w)
                         THEN 1 + floor(3 * u(81, i, 0, 0, 0) * u(81, i, 0, 0, 0))::BIGINT
                         ELSE 0 END AS n
          FROM cust
        ), r AS (
          SELECT customer_id, num, join_day, join_secs, k,
            first_day + floor(span * (0.3 + 0.7 * u(82, i, k, 0, 0)))::BIGINT AS day,
            u(83, i, k, 0, 0) AS ut, u(84, i, k, 0, 0) AS x
          FROM c, range(c.n) t(k) WHERE n > 0
        ), timed AS (SELECT *, {timed.format(lo=25200, width=57600)} FROM r)
        SELECT 'R' || printf('%06d', row_number() OVER (ORDER BY day, secs, num, k))
                 AS redemption_id,
          customer_id, {reward} AS reward_id, ts(day, secs) AS requested_at, day
        FROM timed
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE adj AS
        WITH r AS (
          SELECT customer_id, num, join_day, join_secs,
            first_day + floor(span * u(91, i, 0, 0, 0))::BIGINT AS day,
            u(92, i, 0, 0, 0) AS ut, 1 + floor(u(93, i, 0, 0, 0) * {len(ADJUSTMENTS)})::BIGINT AS a
          FROM cust WHERE u(90, i, 0, 0, 0) < {adj_share}
        ), timed AS (SELECT *, {timed.format(lo=32400, width=28800)} FROM r)
        SELECT 'A' || printf('%05d', row_number() OVER (ORDER BY day, secs, num)) AS adjustment_id,
          customer_id, {points}[a] AS points, {reasons}[a] AS reason,
          ts(day, secs) AS created_at, day
        FROM timed
        """
    )


def _weighted_pick(x: str, values: Sequence[str], weights: Sequence[float]) -> str:
    """SQL choosing one of `values` by the uniform `x`, with the given relative weights."""
    total, acc, whens = sum(weights), 0.0, []
    for value, weight in zip(values[:-1], weights[:-1], strict=True):
        acc += weight
        whens.append(f"WHEN {x} < {acc / total!r} THEN {_sql_list([value])[1:-1]}")
    last = _sql_list([values[-1]])[1:-1]
    return f"CASE {' '.join(whens)} ELSE {last} END" if whens else last


def _events_sql(plan: _Plan, day_from: int, day_to: int) -> str:
    """The events of the days [day_from, day_to), in time order, ids numbered per day."""
    raw_type = _weighted_pick("ut", [t for t, _ in EVENT_TYPES], [w for _, w in EVENT_TYPES])
    email_types = ", ".join(f"'{t}'" for t in EMAIL_EVENT_TYPES)
    forms = _sql_list(FORMS)
    json_cast = "" if plan.fmt == "csv" else "::JSON"
    return f"""
    WITH cells AS (
      SELECT c.i, c.num, c.customer_id, c.join_day, c.join_secs, c.has_email, d.day,
        geo(u(100, c.i, d.day, 0, 0), c.lam_e / (1 + c.lam_e), 200) AS n
      FROM cust c, range({day_from}, {day_to}) d(day)
      WHERE d.day >= c.first_day
    ), e AS (
      SELECT cells.* EXCLUDE (n), k, u(101, i, day, k, 0) AS ut, u(103, i, day, k, 0) AS ux,
        CASE WHEN day = join_day
               THEN join_secs + 1 + floor(u(102, i, day, k, 0) * (86399 - join_secs))
             ELSE 21600 + floor(u(102, i, day, k, 0) * 64800) END::BIGINT AS secs,
        floor({CATALOG_SIZE} * u(104, i, day, k, 0) * u(105, i, day, k, 0))::BIGINT AS p
      FROM cells, range(cells.n) r(k)
      WHERE n > 0
    ), typed AS (
      SELECT e.*, p.sku, p.category, p.cents,
        CASE WHEN NOT has_email AND {raw_type} IN ({email_types}) THEN 'page_view'
             ELSE {raw_type} END AS type,
        strftime(dt(day), '%Y%m%d') AS ymd, strftime(dt(day), '%Y-%m') AS ym
      FROM e JOIN products p USING (p)
    ), numbered AS (
      SELECT *, row_number() OVER (PARTITION BY day ORDER BY secs, num, k) AS seq FROM typed
    )
    SELECT 'E' || ymd || '-' || printf('%06d', seq) AS event_id,
      customer_id, type, ts(day, secs) AS occurred_at,
      (CASE type
        WHEN 'page_view' THEN '{{"url": "/p/' || lower(sku) || '"}}'
        WHEN 'email_open' THEN '{{"campaign": "nl-' || ym || '"}}'
        WHEN 'link_click' THEN '{{"url": "/c/' || category || '", "campaign": "nl-' || ym || '"}}'
        WHEN 'add_to_cart' THEN '{{"sku": "' || sku || '", "qty": '
                                || (1 + floor(ux * 2)::BIGINT) || '}}'
        WHEN 'product_like' THEN '{{"sku": "' || sku || '"}}'
        WHEN 'form_fill' THEN '{{"form": "' || pick({forms}, ux) || '"}}'
        WHEN 'article_read' THEN '{{"url": "/blog/' || (1 + floor(ux * 120)::BIGINT) || '"}}'
        WHEN 'newsletter_read' THEN '{{"issue": ' || (1 + (day + 3650) // 14) || '}}'
        WHEN 'unsubscribe' THEN '{{"list": "newsletter"}}'
        ELSE '{{"value": ' || money(cents * (1 + floor(ux * 3)::BIGINT)) || ', "items": '
             || (1 + floor(ux * 3)::BIGINT) || '}}'
      END){json_cast} AS properties
    FROM numbered
    ORDER BY day, seq
    """


def _daily_sql(plan: _Plan, source: str, day_from: int, day_to: int) -> str:
    """The export of one source's rows dated in [day_from, day_to), in time order."""
    within = f"day >= {day_from} AND day < {day_to}"
    if source == "orders":
        currency = plan.currency.replace("'", "''")
        return f"""
        SELECT order_id, customer_id, ts(day, secs) AS ordered_at, money(total_cents) AS total,
          '{currency}' AS currency, status, channel
        FROM ord WHERE {within} ORDER BY day, seq"""
    if source == "order_items":
        return f"""
        SELECT order_id, sku, quantity, money(price_cents) AS unit_price, category, tags
        FROM items WHERE {within} ORDER BY day, seq, line"""
    if source == "returns":
        return f"""
        SELECT order_id, ts(rday, secs) AS returned_at, money(cents) AS amount
        FROM ret WHERE rday >= {day_from} AND rday < {day_to}
        ORDER BY rday, secs, day, seq, line"""
    if source == "events":
        return _events_sql(plan, day_from, day_to)
    if source == "redemptions":
        return f"""
        SELECT redemption_id, customer_id, reward_id, requested_at
        FROM red WHERE {within} ORDER BY redemption_id"""
    if source == "adjustments":
        return f"""
        SELECT adjustment_id, customer_id, points, reason, created_at
        FROM adj WHERE {within} ORDER BY adjustment_id"""
    raise ValueError(source)


def _write_days(
    con: duckdb.DuckDBPyConnection, plan: _Plan, day_from: int, day_to: int, day: date | None
) -> dict[str, int]:
    """Write the daily sources for [day_from, day_to) to their files (suffixed with `day`)."""
    counts = {}
    for source in DAILY_SOURCES:
        if source in ("redemptions", "adjustments") and not plan.redemptions:
            continue
        counts[plan.path(source, day).name] = _write(
            con, plan, _daily_sql(plan, source, day_from, day_to), source, day
        )
    return counts


def _write(
    con: duckdb.DuckDBPyConnection, plan: _Plan, query: str, source: str, day: date | None = None
) -> int:
    """COPY a query to its file; returns the number of rows written."""
    options = {
        "csv": "FORMAT csv, HEADER true, DELIMITER ','",
        "parquet": "FORMAT parquet",
        "jsonl": "FORMAT json",
    }[plan.fmt]
    path = str(plan.path(source, day)).replace("'", "''")
    row = con.execute(f"COPY ({query}) TO '{path}' ({options})").fetchone()
    return int(row[0]) if row else 0


def expected_counts(
    customers: int, orders_per_customer: float = 10.0, items_per_order: float = 2.5,
    events_per_customer: float = 100.0,
) -> dict[str, float]:  # fmt: skip
    """Approximate row counts the rates ask for (the generator lands near these)."""
    orders = customers * orders_per_customer
    return {
        "orders": orders,
        "order_items": orders * items_per_order,
        "events": customers * events_per_customer,
    }


__all__ = ["BENCH", "DEFAULT_REWARD_IDS", "DEMO", "expected_counts", "generate", "generate_day"]
