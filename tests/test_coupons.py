"""Coupon pools (SPEC 4 `coupons`, 7, 9.21) on literal rows in an in-memory state."""

from __future__ import annotations

import collections
from datetime import date
from pathlib import Path

import pytest

from loyalty_cli import state
from loyalty_cli.config.model import Program, with_defaults
from loyalty_cli.diagnostics import LoyaltyError
from loyalty_cli.engine import coupons

D = date(2026, 3, 31)


def make_program(tmp_path: Path, pools: list[dict]) -> Program:
    data = {
        "version": 1,
        "program": {"id": "club", "name": "Club", "currency": "PLN", "timezone": "Europe/Warsaw"},
        "coupons": {"pools": pools},
    }
    return Program(tmp_path / "p.yaml", with_defaults(data))


@pytest.fixture
def con():
    c = state.connect(None)
    yield c
    c.close()


def codes_of(con, pool_id: str) -> list[tuple]:
    return con.execute(
        "SELECT seq, code, valid_until, assigned_to, assigned_for, assigned_on "
        "FROM coupon_codes WHERE pool_id = ? ORDER BY seq",
        [pool_id],
    ).fetchall()


def requests(con, rows: list[tuple[str, str, int]]) -> str:
    """A requests relation (customer_id, request_id, ord) as a temp table."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _req (customer_id VARCHAR, request_id VARCHAR, ord INTEGER)"
    )
    for row in rows:
        con.execute("INSERT INTO _req VALUES (?, ?, ?)", list(row))
    return "SELECT * FROM _req"


# --- generate pools -----------------------------------------------------------------------


def test_alphabet_has_no_look_alikes():
    assert not set("0O1IL") & set(coupons.ALPHABET)
    assert len(set(coupons.ALPHABET)) == len(coupons.ALPHABET) == 31


def test_generated_codes_have_prefix_length_alphabet_and_are_unique(con, tmp_path):
    program = make_program(
        tmp_path,
        [
            {
                "id": "wb",
                "source": "generate",
                "prefix": "WB25-",
                "length": 10,
                "count": 5000,
                "valid_days": 30,
            }
        ],
    )
    assert coupons.pool_free(con, "wb") == 0
    assert coupons.ensure_pool(con, program, "wb") == 5000
    rows = codes_of(con, "wb")
    codes = [r[1] for r in rows]
    assert len(codes) == len(set(codes)) == 5000
    assert all(c.startswith("WB25-") and len(c) == 15 for c in codes)
    assert all(set(c[5:]) <= set(coupons.ALPHABET) for c in codes)
    assert [r[0] for r in rows] == list(range(1, 5001))
    assert all(r[2] is None and r[3] is None for r in rows)  # valid_days applies on assignment
    # Filled once, when first needed: a second call adds nothing.
    assert coupons.ensure_pool(con, program, "wb") == 0
    assert coupons.pool_free(con, "wb") == 5000


def test_generated_codes_avoid_existing_ones():
    taken = {"X-" + a + b for a in coupons.ALPHABET for b in coupons.ALPHABET}
    taken.discard("X-AB")
    new = coupons.generate_codes("X-", 2, 1, taken)
    assert new == ["X-AB"]


def test_generate_pool_adds_more_codes_after_the_last_seq(con, tmp_path):
    program = make_program(tmp_path, [{"id": "g", "source": "generate", "length": 6, "count": 3}])
    assert coupons.generate_pool(con, program, "g") == 3
    assert coupons.generate_pool(con, program, "g", count=2) == 2
    rows = codes_of(con, "g")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert len({r[1] for r in rows}) == 5


def test_too_many_codes_for_their_length_is_an_error(con, tmp_path):
    program = make_program(
        tmp_path, [{"id": "g", "source": "generate", "length": 4, "count": 500_000}]
    )
    with pytest.raises(LoyaltyError) as err:
        coupons.ensure_pool(con, program, "g")
    assert "easy to guess" in str(err.value)
    assert coupons.pool_size(con, "g") == 0


def test_generate_on_a_file_pool_is_refused(con, tmp_path):
    (tmp_path / "c.csv").write_text("code\nA\n")
    program = make_program(tmp_path, [{"id": "f", "source": "file", "path": "c.csv"}])
    with pytest.raises(LoyaltyError):
        coupons.generate_pool(con, program, "f")


def test_unknown_pool_is_an_error(con, tmp_path):
    program = make_program(tmp_path, [])
    with pytest.raises(LoyaltyError, match="unknown coupon pool 'nope'"):
        coupons.ensure_pool(con, program, "nope")


# --- file pools ---------------------------------------------------------------------------


def test_file_pool_skips_duplicates_and_empty_codes(con, tmp_path):
    (tmp_path / "coupons").mkdir()
    path = tmp_path / "coupons" / "r20.csv"
    path.write_text(
        "code,valid_until\n"
        "AAA-1,2026-12-31\n"
        "BBB-2,\n"
        "AAA-1,2027-01-31\n"  # repeat: the first one counts
        ",2026-12-31\n"  # empty code
        "\n"
        "  CCC-3  ,2026-06-30\n"
    )
    program = make_program(tmp_path, [{"id": "r20", "source": "file", "path": "coupons/r20.csv"}])
    assert coupons.ensure_pool(con, program, "r20") == 3
    assert [(r[0], r[1], r[2]) for r in codes_of(con, "r20")] == [
        (1, "AAA-1", date(2026, 12, 31)),
        (2, "BBB-2", None),
        (3, "CCC-3", date(2026, 6, 30)),
    ]
    # Read again with lines added: only the new codes are appended, after the last seq.
    path.write_text("code,valid_until\nAAA-1,2026-12-31\nDDD-4,\nBBB-2,\nEEE-5,\n")
    assert coupons.ensure_pool(con, program, "r20") == 2
    assert [(r[0], r[1]) for r in codes_of(con, "r20")][3:] == [(4, "DDD-4"), (5, "EEE-5")]
    assert coupons.ensure_pool(con, program, "r20") == 0


def test_file_with_only_a_code_column_and_semicolons(con, tmp_path):
    (tmp_path / "a.csv").write_text("code\nX1\nX2\n")
    (tmp_path / "b.csv").write_text("\ufeffCode;Valid_Until\nY1;2026-05-01\n")
    assert coupons.import_file(con, "a", tmp_path / "a.csv") == 2
    assert coupons.import_file(con, "b", tmp_path / "b.csv") == 1
    assert codes_of(con, "b")[0][1:3] == ("Y1", date(2026, 5, 1))


def test_a_code_sits_in_one_pool_only(con, tmp_path):
    """A code is given out once, ever (SPEC 7): a code another pool holds, in any case, is
    refused by `coupons import` and left out, with a warning, by a run's file pool."""
    (tmp_path / "a.csv").write_text("code\nX1\nX2\n")
    (tmp_path / "b.csv").write_text("code\nx2\nY1\nX1\n")
    assert coupons.import_file(con, "a", tmp_path / "a.csv") == 2
    with pytest.raises(LoyaltyError) as err:
        coupons.import_file(con, "b", tmp_path / "b.csv")
    diag = err.value.diagnostics[0]
    assert (diag.code, diag.message) == (
        "R308",
        "coupon pool 'b': 2 code(s) of b.csv are held by another pool (e.g. 'X1')",
    )
    assert coupons.pool_size(con, "b") == 0
    warnings: list[str] = []
    assert coupons.import_file(con, "b", tmp_path / "b.csv", warnings=warnings) == 1
    assert [c[1] for c in codes_of(con, "b")] == ["Y1"]
    assert warnings == [
        "coupon pool 'b': 2 code(s) of b.csv are held by another pool (e.g. 'X1'); they were "
        "left out, as a code is given out once, ever"
    ]


def test_codes_that_differ_only_in_case_are_one_code(con, tmp_path):
    (tmp_path / "a.csv").write_text("code\nQQ1\nqq1\nZZ9\n")
    assert coupons.import_file(con, "a", tmp_path / "a.csv") == 2
    (tmp_path / "a.csv").write_text("code\nQQ1\nqq1\nZZ9\nzz9\nNEW\n")
    assert coupons.import_file(con, "a", tmp_path / "a.csv") == 1
    assert [c[1] for c in codes_of(con, "a")] == ["QQ1", "ZZ9", "NEW"]


def test_a_code_is_one_line_of_printable_characters(con, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('code\nA1\n"multi\nline"\n' + "B" * 65 + "\n")
    with pytest.raises(LoyaltyError) as err:
        coupons.import_file(con, "p", path)
    diag = err.value.diagnostics[0]
    assert (diag.line, diag.message) == (
        4,
        "the code 'multi\\nline' holds a line break or another character that is not "
        "printable (a control character, an invisible or a non-breaking space)",
    )
    for code in ("AB\u200bC", "D\u00a0E"):  # a zero-width space, a non-breaking space
        path.write_text(f"code\n{code}\n")
        with pytest.raises(LoyaltyError) as err:
            coupons.import_file(con, "p", path)
        assert err.value.diagnostics[0].line == 2
    path.write_text("code\nA1\n" + "B" * 65 + "\n")
    with pytest.raises(LoyaltyError) as err:
        coupons.import_file(con, "p", path)
    assert err.value.diagnostics[0].message == (
        f"the code {'B' * 40!r}... is longer than 64 characters"
    )


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("code,valid_until\nA,2026-01-01\nB,31.12.2026\n", 3, "is not a date"),
        ("coupon\nA\n", 1, "unknown column 'coupon'"),
        ("valid_until\n2026-01-01\n", 1, "no `code` column"),
        ("code,code\nA,B\n", 1, "appears twice"),
        ("code\nA\nB,C\n", 3, "2 fields where the header has 1"),
        ("", 1, "no header"),
        ('code\nA\n"B\n', 3, "malformed CSV"),
    ],
)
def test_malformed_file_names_file_and_line(con, tmp_path, content, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(LoyaltyError) as err:
        coupons.import_file(con, "p", path)
    diag = err.value.diagnostics[0]
    assert diag.path == str(path)
    assert diag.line == line
    assert message in diag.message
    assert diag.hint
    assert coupons.pool_size(con, "p") == 0


def test_non_utf8_file_names_the_line(con, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"code\nA\n\xff\xfeB\n")
    with pytest.raises(LoyaltyError) as err:
        coupons.import_file(con, "p", path)
    assert err.value.diagnostics[0].line == 3


def test_missing_file_is_an_error(con, tmp_path):
    program = make_program(tmp_path, [{"id": "f", "source": "file", "path": "nope.csv"}])
    with pytest.raises(LoyaltyError) as err:
        coupons.ensure_pool(con, program, "f")
    assert err.value.diagnostics[0].code == "D601"
    assert err.value.diagnostics[0].path == str(tmp_path / "nope.csv")


# --- assignment ---------------------------------------------------------------------------


def test_assignment_follows_seq_and_request_order_and_is_once_ever(con, tmp_path):
    (tmp_path / "c.csv").write_text("code\nC1\nC2\nC3\n")
    coupons.import_file(con, "p", tmp_path / "c.csv")
    # Ties on ord are broken by request_id.
    sql = requests(con, [("bob", "r-2", 5), ("ann", "r-9", 1), ("cid", "r-1", 5)])
    assert coupons.assign_codes(con, "p", sql, D) == 3
    got = {r[4]: (r[1], r[3], r[5]) for r in codes_of(con, "p")}
    assert got == {"r-9": ("C1", "ann", D), "r-1": ("C2", "cid", D), "r-2": ("C3", "bob", D)}
    assert coupons.pool_free(con, "p") == 0
    # Nothing is left: no code goes out twice, and repeated requests get nothing new.
    sql = requests(con, [("dan", "r-4", 1), ("ann", "r-9", 1)])
    assert coupons.assign_codes(con, "p", sql, D) == 0
    assert {r[4] for r in codes_of(con, "p")} == {"r-9", "r-1", "r-2"}


def test_a_request_holding_a_code_keeps_it(con, tmp_path):
    (tmp_path / "c.csv").write_text("code\nC1\nC2\n")
    coupons.import_file(con, "p", tmp_path / "c.csv")
    sql = requests(con, [("ann", "m-1", 1)])
    assert coupons.assign_codes(con, "p", sql, D) == 1
    assert coupons.assign_codes(con, "p", sql, D) == 0
    assert coupons.pool_free(con, "p") == 1


def test_more_requests_than_codes_serves_the_first(con, tmp_path):
    (tmp_path / "c.csv").write_text("code\nC1\n")
    coupons.import_file(con, "p", tmp_path / "c.csv")
    sql = requests(con, [("bob", "b", 2), ("ann", "a", 1)])
    assert coupons.assign_codes(con, "p", sql, D) == 1
    assert codes_of(con, "p")[0][3:5] == ("ann", "a")


def test_expired_codes_are_not_handed_out(con, tmp_path):
    (tmp_path / "c.csv").write_text("code,valid_until\nOLD,2026-03-30\nTODAY,2026-03-31\n")
    coupons.import_file(con, "p", tmp_path / "c.csv")
    assert coupons.pool_free(con, "p") == 2
    assert coupons.pool_free(con, "p", D) == 1
    sql = requests(con, [("ann", "a", 1), ("bob", "b", 2)])
    assert coupons.assign_codes(con, "p", sql, D) == 1
    assert [(r[1], r[3]) for r in codes_of(con, "p")] == [("OLD", None), ("TODAY", "ann")]


def test_valid_days_start_at_assignment(con, tmp_path):
    program = make_program(
        tmp_path, [{"id": "wb", "source": "generate", "length": 8, "count": 2, "valid_days": 30}]
    )
    sql = requests(con, [("ann", "a", 1)])
    assert coupons.assign_pool_codes(con, program, "wb", sql, D) == 1
    rows = codes_of(con, "wb")
    assert rows[0][2:] == (date(2026, 4, 30), "ann", "a", D)
    assert rows[1][2:] == (None, None, None, None)


def test_status_per_pool(con, tmp_path):
    (tmp_path / "c.csv").write_text("code,valid_until\nA,\nB,\nC,2026-01-01\n")
    program = make_program(
        tmp_path,
        [
            {"id": "f", "source": "file", "path": "c.csv"},
            {"id": "g", "source": "generate", "length": 8, "count": 50},
        ],
    )
    coupons.ensure_pool(con, program, "f")
    coupons.assign_codes(con, "f", requests(con, [("ann", "a", 1)]), D)
    status = coupons.coupons_status(con, program)
    assert status == [
        {
            "pool": "f",
            "source": "file",
            "total": 3,
            "assigned": 1,
            "free": 2,
            "size": 2,
            "expired": 0,
            "to_generate": 0,
        },
        {
            "pool": "g",
            "source": "generate",
            "total": 0,
            "assigned": 0,
            "free": 0,
            "size": 0,
            "expired": 0,
            "to_generate": 50,
        },
    ]
    assert coupons.coupons_status(con, program, D)[0] == {
        "pool": "f",
        "source": "file",
        "total": 3,
        "assigned": 1,
        "free": 1,
        "size": 1,
        "expired": 1,
        "to_generate": 0,
    }


def test_generated_characters_are_equally_likely():
    # 10,000 codes of 31 characters: each character of the alphabet 10,000 times on
    # average (standard deviation about 98); 10% off would be 10 deviations.
    codes = coupons.generate_codes("", 31, 10_000, set())
    assert len(set(codes)) == 10_000
    counts = collections.Counter("".join(codes))
    assert set(counts) == set(coupons.ALPHABET)
    assert all(9_000 < n < 11_000 for n in counts.values())
