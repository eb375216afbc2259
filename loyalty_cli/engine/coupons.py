"""Coupon pools: codes imported from a file or generated, each assigned at most once, ever.

SPEC 4 `coupons`, 7 and 9.21. Every pool's codes live in the state table `coupon_codes`
(pool_id, code, valid_until, seq, assigned_to, assigned_for, assigned_on), numbered by
`seq` in the order they entered the pool. Assignment hands out the free codes in `seq`
order and never takes a code back, so a code reaches one member for one purpose only.

- `file` pools read their CSV (header `code[,valid_until]`) next to the program file every
  time they are needed: codes added to the file since are appended, codes already in the
  pool are left as they are, so a shop can top a pool up by adding lines.
- `generate` pools are filled with `count` codes the first time they are needed (or by
  `loyalty coupons generate`): `prefix` + `length` characters drawn with `secrets` from an
  alphabet without look-alike characters. `valid_days` starts on the day a code is assigned.

A code whose `valid_until` has passed is never handed out: a member would get a dead coupon.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import secrets
from pathlib import Path

from loyalty_cli.config.model import Program
from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError
from loyalty_cli.state import Connection

# No 0/O, 1/I/L: codes are read off screens and typed in by hand.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

FILE_COLUMNS = ("code", "valid_until")
# Longest code a file may hold: a code is typed in by hand or read off a screen.
MAX_CODE_LENGTH = 64

# Appends codes (given as lists) to a pool after its last seq, skipping empty codes,
# repeats within the list and codes already stored, in this pool or another (a code is
# given out once, ever: SPEC 7), whatever their case.
_APPEND = """
    INSERT INTO coupon_codes (pool_id, code, valid_until, seq)
    WITH given AS (
        SELECT unnest(CAST($codes AS VARCHAR[])) AS code,
               unnest(CAST($valid AS DATE[])) AS valid_until,
               unnest(range(1, $n + 1)) AS pos),
    fresh AS (
        SELECT * FROM given g
        WHERE g.code IS NOT NULL AND g.code <> ''
          AND NOT EXISTS (SELECT 1 FROM coupon_codes c WHERE upper(c.code) = upper(g.code))
        QUALIFY row_number() OVER (PARTITION BY upper(g.code) ORDER BY g.pos) = 1)
    SELECT $pool, code, valid_until,
           (SELECT coalesce(max(seq), 0) FROM coupon_codes WHERE pool_id = $pool)
               + row_number() OVER (ORDER BY pos)
    FROM fresh"""


def pool_config(program: Program, pool_id: str) -> dict:
    """The program's definition of a pool (validated programs only name known pools)."""
    for pool in (program.data.get("coupons") or {}).get("pools") or []:
        if pool.get("id") == pool_id:
            return pool
    known = ", ".join(p["id"] for p in (program.data.get("coupons") or {}).get("pools") or [])
    raise LoyaltyError(
        Diagnostic(
            code="R302",
            path=str(program.path),
            message=f"unknown coupon pool '{pool_id}'",
            hint=f"Known coupon pools: {known}." if known else "Define it under coupons.pools.",
        ),
        ExitCode.USAGE,
    )


def _append(con: Connection, pool_id: str, codes: list[str], valid: list[dt.date | None]) -> int:
    return _count(con, _APPEND, {"pool": pool_id, "codes": codes, "valid": valid, "n": len(codes)})


def _count(con: Connection, sql: str, params: dict) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def pool_size(con: Connection, pool_id: str) -> int:
    """All codes the pool has ever held, assigned or not."""
    return _count(con, "SELECT count(*) FROM coupon_codes WHERE pool_id = $pool", {"pool": pool_id})


def pool_free(con: Connection, pool_id: str, as_of: dt.date | None = None) -> int:
    """Codes not yet assigned (9.21); with `as_of`, only those still valid on that day."""
    valid = "AND (valid_until IS NULL OR valid_until >= $as_of)" if as_of is not None else ""
    params: dict = {"pool": pool_id}
    if as_of is not None:
        params["as_of"] = as_of
    return _count(
        con,
        f"SELECT count(*) FROM coupon_codes WHERE pool_id = $pool AND assigned_on IS NULL {valid}",
        params,
    )


# --- file pools ---------------------------------------------------------------------------


def _file_error(
    path: Path, line: int | None, message: str, hint: str, code: str = "D603"
) -> LoyaltyError:
    return LoyaltyError(
        Diagnostic(code=code, path=str(path), line=line, message=message, hint=hint),
        ExitCode.INVALID,
    )


def read_code_file(path: str | Path) -> tuple[list[str], list[dt.date | None]]:
    """Parse a coupon CSV: a header naming `code` (and optionally `valid_until`), then rows.

    Returns the codes and their last valid days in file order, repeats and empty codes
    included (the append skips them). A problem is a LoyaltyError naming the file and line.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise _file_error(
            p,
            None,
            "coupon file not found",
            "Check the pool's `path`; it is relative to the program file.",
            code="D601",
        ) from None
    except OSError as exc:
        raise _file_error(
            p,
            None,
            f"coupon file cannot be read ({exc.strerror})",
            "Check the file's permissions.",
            code="D601",
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _file_error(
            p, line, "not valid UTF-8 text", "Save the coupon file as UTF-8."
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    codes: list[str] = []
    valid: list[dt.date | None] = []
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise _file_error(
                p,
                1,
                "the coupon file has no header",
                "Start the file with the line `code,valid_until` (or just `code`).",
            )
        names = [h.strip().lower() for h in header]
        for name in names:
            if name not in FILE_COLUMNS:
                raise _file_error(
                    p,
                    1,
                    f"unknown column '{name}' in the header",
                    "A coupon file has the columns code and, optionally, valid_until.",
                )
            if names.count(name) > 1:
                raise _file_error(
                    p,
                    1,
                    f"column '{name}' appears twice in the header",
                    "Keep one column of each name.",
                )
        if "code" not in names:
            raise _file_error(
                p,
                1,
                "no `code` column in the header",
                "Start the file with the line `code,valid_until` (or just `code`).",
            )
        code_at = names.index("code")
        valid_at = names.index("valid_until") if "valid_until" in names else None
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) > len(names):
                raise _file_error(
                    p,
                    reader.line_num,
                    f"{len(row)} fields where the header has {len(names)}",
                    "Quote codes that contain the delimiter, or remove the extra fields.",
                )
            code = row[code_at].strip() if code_at < len(row) else ""
            if len(code) > MAX_CODE_LENGTH or not code.isprintable():
                raise _file_error(
                    p,
                    reader.line_num,
                    f"the code {code[:40]!r}{'...' if len(code) > 40 else ''} "
                    + (
                        f"is longer than {MAX_CODE_LENGTH} characters"
                        if len(code) > MAX_CODE_LENGTH
                        else "holds a line break or another character that is not printable "
                        "(a control character, an invisible or a non-breaking space)"
                    ),
                    "A code is one line of printable characters, as a customer types it.",
                )
            until = None
            if valid_at is not None and valid_at < len(row) and row[valid_at].strip():
                cell = row[valid_at].strip()
                try:
                    until = dt.date.fromisoformat(cell)
                except ValueError:
                    raise _file_error(
                        p,
                        reader.line_num,
                        f"valid_until {cell!r} is not a date",
                        "Write dates as YYYY-MM-DD, or leave the cell empty "
                        "for a code without an end date.",
                    ) from None
            codes.append(code)
            valid.append(until)
    except csv.Error as exc:
        raise _file_error(
            p, reader.line_num or 1, f"malformed CSV ({exc})", "Check the quoting on this line."
        ) from None
    return codes, valid


def import_file(
    con: Connection, pool_id: str, path: str | Path, *, warnings: list[str] | None = None
) -> int:
    """Append the codes of a CSV file to a pool; returns how many were new.

    Codes another pool holds (whatever their case) are left out: a code is given out once,
    ever. With `warnings` (a run reading a file pool) that is said there and the run goes
    on; without (`loyalty coupons import`) it is an error (R308) and nothing is imported.
    """
    codes, valid = read_code_file(path)
    shared = [
        code
        for (code,) in con.execute(
            """SELECT DISTINCT g.code FROM (SELECT unnest(CAST($codes AS VARCHAR[])) AS code) g
            WHERE EXISTS (SELECT 1 FROM coupon_codes c
                          WHERE c.pool_id <> $pool AND upper(c.code) = upper(g.code))
            ORDER BY g.code""",
            {"codes": codes, "pool": pool_id},
        ).fetchall()
    ]
    if shared:
        what = (
            f"coupon pool '{pool_id}': {len(shared)} code(s) of {Path(path).name} are held by "
            f"another pool (e.g. {shared[0]!r})"
        )
        if warnings is None:
            raise LoyaltyError(
                Diagnostic(
                    code="R308",
                    path=str(path),
                    message=what,
                    hint="A code is given out once, ever: remove them from the file, or "
                    "give each pool codes of its own.",
                ),
                ExitCode.INVALID,
            )
        said = what + "; they were left out, as a code is given out once, ever"
        if said not in warnings:  # a pool read by both redemptions and workflows
            warnings.append(said)
    return _append(con, pool_id, codes, valid)


# --- generate pools -----------------------------------------------------------------------


def guessable(total: int, length: int) -> int | None:
    """The number of possible codes of `length` characters when `total` codes would be
    more than half of them (codes would then be easy to guess), else None."""
    possible = len(ALPHABET) ** length
    return possible if total > possible // 2 else None


def generate_codes(prefix: str, length: int, count: int, taken: set[str]) -> list[str]:
    """`count` new codes `prefix` + `length` random characters, none of them in `taken`.

    `taken` holds upper-cased codes, so codes stay unique for shop systems that ignore case.
    """
    out: list[str] = []
    seen = set(taken)
    # Random bytes drawn in bulk, each kept only below the largest multiple of the
    # alphabet's size, so that every character is equally likely (as secrets.choice, which
    # took 1.4 s for 50,000 codes one character at a time).
    size = len(ALPHABET)
    below = 256 - 256 % size
    while len(out) < count:
        raw = secrets.token_bytes(max((count - len(out)) * length * 9 // 8, length) + 16)
        chars = [ALPHABET[b % size] for b in raw if b < below]
        for i in range(0, len(chars) - length + 1, length):
            code = prefix + "".join(chars[i : i + length])
            key = code.upper()
            if key not in seen:
                seen.add(key)
                out.append(code)
                if len(out) == count:
                    break
    return out


def generate_pool(con: Connection, program: Program, pool_id: str, count: int | None = None) -> int:
    """Add `count` (default: the pool's `count`) generated codes to a generate pool."""
    pool = pool_config(program, pool_id)
    if pool.get("source") != "generate":
        raise LoyaltyError(
            Diagnostic(
                code="R308",
                path=str(program.path),
                message=f"coupon pool '{pool_id}' takes its codes from a file",
                hint="Use `loyalty coupons import` for file pools.",
            ),
            ExitCode.USAGE,
        )
    prefix = str(pool.get("prefix") or "")
    length = int(pool["length"])
    n = int(pool["count"] if count is None else count)
    if n <= 0:
        return 0
    taken = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT upper(code) FROM coupon_codes "
            "WHERE starts_with(upper(code), upper($prefix)) AND length(code) = $len",
            {"prefix": prefix, "len": len(prefix) + length},
        ).fetchall()
    }
    possible = guessable(len(taken) + n, length)
    if possible is not None:
        raise LoyaltyError(
            Diagnostic(
                code="R308",
                path=str(program.path),
                message=f"coupon pool '{pool_id}': {len(taken) + n} codes of {length} "
                f"characters would be more than half of the {possible} possible ones, "
                "so codes would be easy to guess",
                hint="Raise the pool's `length`.",
            ),
            ExitCode.INVALID,
        )
    codes = generate_codes(prefix, length, n, taken)
    return _append(con, pool_id, codes, [None] * len(codes))


def ensure_pool(
    con: Connection, program: Program, pool_id: str, warnings: list[str] | None = None
) -> int:
    """Bring a pool's stored codes up to date before codes are taken from it.

    File pools append what their CSV has that the pool has not (codes of other pools left
    out, said in `warnings`); generate pools are filled with `count` codes when they have
    never had any. Returns the number of codes added.
    """
    pool = pool_config(program, pool_id)
    if pool.get("source") == "file":
        return import_file(
            con,
            pool_id,
            program.path.parent / pool["path"],
            warnings=[] if warnings is None else warnings,
        )
    if pool_size(con, pool_id) == 0:
        return generate_pool(con, program, pool_id)
    return 0


# --- assignment ---------------------------------------------------------------------------


def assign_codes(
    con: Connection,
    pool_id: str,
    requests_sql: str,
    as_of: dt.date,
    *,
    valid_days: int | None = None,
) -> int:
    """Give the pool's next free codes (by seq) to requests, set-based; returns codes given.

    `requests_sql` (SQL built by the engine) has the columns customer_id, request_id (what
    the code is for, stored as `assigned_for`) and ord; requests are served in (ord,
    request_id) order until the free codes run out. A request that already holds a code of
    this pool keeps it and gets no other, so repeating a request never spends a second
    code. Codes past their `valid_until` are skipped; `valid_days` (generate pools) sets
    `valid_until` = as_of + valid_days on the codes given.
    """
    return _count(
        con,
        f"""UPDATE coupon_codes
        SET assigned_to = a.customer_id, assigned_for = a.request_id, assigned_on = $as_of,
            valid_until = coalesce(coupon_codes.valid_until,
                                   CAST($as_of + to_days(CAST($days AS INTEGER)) AS DATE))
        FROM (
            WITH req AS (
                SELECT r.customer_id, r.request_id,
                       row_number() OVER (ORDER BY r.ord, r.request_id) AS k
                FROM ({requests_sql}) r
                WHERE NOT EXISTS (SELECT 1 FROM coupon_codes h
                                  WHERE h.pool_id = $pool AND h.assigned_for = r.request_id)),
            free AS (
                SELECT seq, row_number() OVER (ORDER BY seq) AS k FROM coupon_codes
                WHERE pool_id = $pool AND assigned_on IS NULL
                  AND (valid_until IS NULL OR valid_until >= $as_of))
            SELECT free.seq, req.customer_id, req.request_id FROM req JOIN free USING (k)
        ) a
        WHERE coupon_codes.pool_id = $pool AND coupon_codes.seq = a.seq""",
        {"pool": pool_id, "as_of": as_of, "days": valid_days},
    )


def assign_pool_codes(
    con: Connection,
    program: Program,
    pool_id: str,
    requests_sql: str,
    as_of: dt.date,
) -> int:
    """`ensure_pool`, then `assign_codes` with the pool's own `valid_days`."""
    pool = pool_config(program, pool_id)
    ensure_pool(con, program, pool_id)
    return assign_codes(con, pool_id, requests_sql, as_of, valid_days=pool.get("valid_days"))


# --- status -------------------------------------------------------------------------------


def coupons_status(con: Connection, program: Program, as_of: dt.date | None = None) -> list[dict]:
    """One dict per pool of the program, in program order.

    Keys: pool, source, total (codes ever stored), assigned, free (not yet assigned; with
    `as_of`, only those still valid that day), size (= free, 9.21), expired (unassigned
    codes past their valid_until on `as_of`; 0 without it) and to_generate (codes a generate
    pool will make when first needed).
    """
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            """SELECT pool_id, count(*),
                      count(*) FILTER (WHERE assigned_on IS NOT NULL),
                      count(*) FILTER (WHERE assigned_on IS NULL AND $as_of IS NOT NULL
                                       AND valid_until < CAST($as_of AS DATE))
               FROM coupon_codes GROUP BY pool_id""",
            {"as_of": as_of},
        ).fetchall()
    }
    out = []
    for pool in (program.data.get("coupons") or {}).get("pools") or []:
        total, assigned, expired = (int(x) for x in rows.get(pool["id"], (0, 0, 0)))
        free = total - assigned - expired
        out.append(
            {
                "pool": pool["id"],
                "source": pool["source"],
                "total": total,
                "assigned": assigned,
                "free": free,
                "size": free,
                "expired": expired,
                "to_generate": int(pool["count"])
                if pool["source"] == "generate" and not total
                else 0,
            }
        )
    return out


# --- `loyalty coupons` ------------------------------------------------------------------------


def change_pools(program: Program, state_path, change):
    """Call `change(con)` on the program's state in one transaction; returns its result.

    As for a run: the state is locked while it is open, upgraded when older, and must hold
    this program's runs (D609); a failure leaves it as it was."""
    from loyalty_cli import state
    from loyalty_cli.engine.run import check_program

    con = state.connect(state_path)
    try:
        check_program(con, program, state_path)
        con.execute("BEGIN TRANSACTION")
        try:
            result = change(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return result
    finally:
        con.close()


def pools_status(program: Program, state_path, as_of: dt.date | None = None) -> list[dict]:
    """`coupons_status` of a state file (all pools empty when there is no state yet).

    Without `as_of`, codes are counted as the next run would find them: on the day after
    the state's last run, so a code whose valid_until has passed is not shown as free. A
    state with no runs has no such day, and every unassigned code counts as free."""
    from loyalty_cli import state
    from loyalty_cli.engine.run import check_program, last_run_day

    exists = state_path is not None and Path(state_path).exists()
    con = state.connect(state_path if exists else None, read_only=exists)
    try:
        if exists:
            check_program(con, program, state_path)
            last = last_run_day(con) if as_of is None else None
            if last is not None:
                as_of = last + dt.timedelta(days=1)
        return coupons_status(con, program, as_of)
    finally:
        con.close()
