"""BG/NBD: hand-computed values, parameter recovery, and the published CDNOW fit."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from loyalty_cli.models import BgNbdFit, expected_purchases, fit_bgnbd, p_alive
from loyalty_cli.models.bgnbd import loglik

CDNOW = Path(__file__).parent / "data" / "cdnow" / "CDNOW_sample.txt"


def _fit(r, alpha, a, b) -> BgNbdFit:
    return BgNbdFit(r=r, alpha=alpha, a=a, b=b, loglik=0.0, n=1.0, converged=True)


# --- hand-computed values ------------------------------------------------------------------


def test_p_alive_is_one_without_repeat_purchases():
    fit = _fit(0.243, 4.414, 0.793, 2.426)
    got = p_alive(fit, [0, 0, 0], [0.0, 0.0, 0.0], [0.0, 5.0, 300.0])
    assert got.tolist() == [1.0, 1.0, 1.0]


def test_p_alive_by_hand():
    # r=1, alpha=1, a=1, b=2; x=2, t_x=1, T=3:
    # a / (b + x - 1) = 1/3, ((alpha + T) / (alpha + t_x))^(r + x) = 2^3 = 8,
    # P(alive) = 1 / (1 + 8/3) = 3/11.
    got = p_alive(_fit(1.0, 1.0, 1.0, 2.0), 2, 1.0, 3.0)
    assert got == pytest.approx(3 / 11, rel=1e-12)


def test_p_alive_of_a_repeat_buyer_who_just_bought_is_below_one():
    # t_x = T: the odds are a / (b + x - 1) = 1 / (2 + 3 - 1) -> P = 4/5.
    got = p_alive(_fit(1.0, 1.0, 1.0, 2.0), 3, 7.0, 7.0)
    assert got == pytest.approx(4 / 5, rel=1e-12)


def test_loglik_of_one_customer_by_hand():
    # r=1, alpha=1, a=1, b=2; x=2, t_x=1, T=3 (paper eq. 6):
    # B(1, 4)/B(1, 2) * Gamma(3)/Gamma(1) * 1 / 4^3 = (1/4)/(1/2) * 2 / 64 = 1/64
    # B(2, 3)/B(1, 2) * Gamma(3)/Gamma(1) * 1 / 2^3 = (1/12)/(1/2) * 2 / 8 = 1/24
    # L = 1/64 + 1/24 = 11/192.
    assert loglik(1.0, 1.0, 1.0, 2.0, [2], [1.0], [3.0]) == pytest.approx(
        math.log(11 / 192), rel=1e-12
    )
    # x = 0, T = 3: only the first term, B(1, 2)/B(1, 2) * 1 * 1/4 = 1/4.
    assert loglik(1.0, 1.0, 1.0, 2.0, [0], [0.0], [3.0]) == pytest.approx(
        math.log(1 / 4), rel=1e-12
    )


def _closed_form_likelihood(r, alpha, a, b, x, t_x, big_t):
    """Paper eq. 6 written out with math.lgamma, one customer at a time."""

    def lnbeta(u, v):
        return math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v)

    common = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
    first = math.exp(common + lnbeta(a, b + x) - lnbeta(a, b) - (r + x) * math.log(alpha + big_t))
    second = 0.0
    if x > 0:
        second = math.exp(
            common + lnbeta(a + 1, b + x - 1) - lnbeta(a, b) - (r + x) * math.log(alpha + t_x)
        )
    return first + second


@pytest.mark.parametrize(
    "x,t_x,big_t",
    [(0, 0.0, 38.86), (2, 30.43, 38.86), (1, 1.71, 38.86), (14, 34.0, 35.29), (1, 0.57, 0.57)],
)
def test_loglik_matches_closed_form_at_published_parameters(x, t_x, big_t):
    expected = math.log(_closed_form_likelihood(0.243, 4.414, 0.793, 2.426, x, t_x, big_t))
    assert loglik(0.243, 4.414, 0.793, 2.426, [x], [t_x], [big_t]) == pytest.approx(
        expected, rel=1e-10
    )


def test_expected_purchases_by_hand():
    # With r = a + b - 1 the 2F1 of eq. 10 has equal first and third arguments, so
    # 2F1(A, B; A; z) = (1 - z)^-B and eq. 10 reduces to
    # (a + b + x - 1) / (a - 1) * (1 - (1 - z)^(a - 1)) * P(alive).
    # r=2, alpha=1, a=2, b=1; T=3, t=4 -> z = 4 / (1 + 3 + 4) = 1/2.
    fit = _fit(2.0, 1.0, 2.0, 1.0)
    # x = 0: (2 + 0) / 1 * (1 - 1/2) * 1 = 1.
    assert expected_purchases(fit, 4.0, 0, 0.0, 3.0) == pytest.approx(1.0, rel=1e-12)
    # x = 2, t_x = 1: P(alive) = 1 / (1 + 2/2 * (4/2)^4) = 1/17; E = 4 * 1/2 / 17 = 2/17.
    assert expected_purchases(fit, 4.0, 2, 1.0, 3.0) == pytest.approx(2 / 17, rel=1e-12)


def _eq10(r, alpha, a, b, t, x, t_x, big_t):
    """The paper's eq. 10 as printed (no transformation of the hypergeometric function)."""
    z = t / (alpha + big_t + t)
    bracket = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * special.hyp2f1(
        r + x, b + x, a + b + x - 1, z
    )
    denominator = 1 + (x > 0) * a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    return (a + b + x - 1) / (a - 1) * bracket / denominator


@pytest.mark.parametrize(
    "t,x,t_x,big_t",
    [(39, 0, 0.0, 38.86), (39, 2, 30.43, 38.86), (52, 1, 1.71, 38.86), (10, 14, 34.0, 35.29)],
)
def test_expected_purchases_matches_printed_eq10(t, x, t_x, big_t):
    params = (0.243, 4.414, 0.793, 2.426)
    expected = _eq10(*params, t, x, t_x, big_t)
    got = expected_purchases(_fit(*params), t, x, t_x, big_t)
    assert got == pytest.approx(expected, rel=1e-9)


def test_expected_purchases_stays_finite_for_frequent_buyers_and_long_horizons():
    fit = _fit(0.243, 4.414, 0.793, 2.426)
    got = expected_purchases(fit, 520.0, [300, 50, 0], [51.0, 30.0, 0.0], [52.0, 52.0, 1.0])
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    # A member buying ~6 times a week who just bought is expected to keep buying.
    assert got[0] > 100


def test_expected_purchases_broadcasts_horizons():
    fit = _fit(2.0, 1.0, 2.0, 1.0)
    got = expected_purchases(fit, np.array([0.0, 4.0]), 0, 0.0, 3.0)
    assert got.tolist() == pytest.approx([0.0, 1.0], rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    x=st.integers(0, 200),
    share=st.floats(0.0, 1.0),
    big_t=st.floats(0.0, 500.0),
    t1=st.floats(0.0, 400.0),
    extra=st.floats(0.0, 400.0),
)
def test_forecasts_are_probabilities_and_grow_with_the_horizon(x, share, big_t, t1, extra):
    fit = _fit(0.243, 4.414, 0.793, 2.426)
    t_x = share * big_t if x > 0 else 0.0
    alive = p_alive(fit, x, t_x, big_t)
    assert 0.0 <= alive <= 1.0
    near = expected_purchases(fit, t1, x, t_x, big_t)
    far = expected_purchases(fit, t1 + extra, x, t_x, big_t)
    assert np.isfinite(near) and np.isfinite(far)
    assert -1e-9 <= near <= far * (1 + 1e-9) + 1e-12


# --- input handling ------------------------------------------------------------------------


def test_weights_are_counts_of_identical_rows():
    x = np.array([0, 0, 0, 1, 1, 2, 3, 0, 5, 1])
    t_x = np.array([0, 0, 0, 4, 4, 9, 10, 0, 11, 2], dtype=float)
    big_t = np.array([12, 12, 6, 12, 12, 12, 11, 3, 12, 5], dtype=float)
    counts = np.array([30, 1, 5, 4, 1, 3, 2, 9, 1, 6])
    weighted = fit_bgnbd(x, t_x, big_t, weights=counts)
    expanded = fit_bgnbd(np.repeat(x, counts), np.repeat(t_x, counts), np.repeat(big_t, counts))
    assert weighted.n == expanded.n == counts.sum()
    for name in ("r", "alpha", "a", "b", "loglik"):
        assert getattr(weighted, name) == pytest.approx(getattr(expanded, name), rel=1e-6)


@pytest.mark.parametrize(
    "frequency,recency,big_t",
    [([1], [5.0], [4.0]), ([-1], [0.0], [4.0]), ([1], [np.nan], [4.0]), ([], [], [])],
)
def test_invalid_input_is_refused(frequency, recency, big_t):
    with pytest.raises(ValueError):
        fit_bgnbd(frequency, recency, big_t)


def test_no_repeat_purchase_at_all_is_not_a_converged_fit():
    # With x = 0 for everyone the likelihood is (alpha / (alpha + T))^r, which grows as
    # r -> 0: there is no optimum, and the fit must say so.
    fit = fit_bgnbd([0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], [10.0, 20.0, 30.0, 40.0])
    assert not fit.converged


# --- parameter recovery --------------------------------------------------------------------


def _simulate(rng, n, r, alpha, a, b, big_t):
    """Draw (x, t_x) for members observed over big_t under BG/NBD.

    While active a member buys at rate lambda ~ Gamma(r, rate alpha); after each repeat
    purchase they drop out with probability p ~ Beta(a, b), so the purchase they drop out
    at is the K-th, K ~ Geometric(p). With N ~ Poisson(lambda T) arrivals in (0, T],
    x = min(K, N) and the x-th of N uniform arrival times is T * Beta(x, N - x + 1).
    """
    lam = rng.gamma(r, 1.0 / alpha, n)
    drop = np.clip(rng.beta(a, b, n), 1e-12, 1.0)
    k = rng.geometric(drop)
    arrivals = rng.poisson(lam * big_t)
    x = np.minimum(k, arrivals)
    at = rng.beta(np.maximum(x, 1), np.maximum(arrivals - x + 1, 1))
    t_x = np.where(x > 0, big_t * at, 0.0)
    return x, t_x


def test_recovers_simulated_parameters():
    rng = np.random.default_rng(20050101)
    n = 100_000
    big_t = rng.uniform(52.0, 156.0, n)  # one to three years of weeks
    x, t_x = _simulate(rng, n, 0.25, 4.0, 0.8, 2.5, big_t)
    fit = fit_bgnbd(x, t_x, big_t)
    assert fit.converged
    assert fit.n == n
    assert fit.r == pytest.approx(0.25, rel=0.10)
    assert fit.alpha == pytest.approx(4.0, rel=0.10)
    assert fit.a == pytest.approx(0.8, rel=0.10)
    assert fit.b == pytest.approx(2.5, rel=0.10)


# --- published figures on CDNOW ------------------------------------------------------------


def cdnow_calibration(days_per_unit: float = 7.0):
    """(x, t_x, T) per customer for the paper's 39-week calibration period.

    Purchases are counted per day (several on one day are one purchase day) up to and
    including 1997-09-30; t_x and T run from the first purchase day to the last purchase
    day and to 1997-09-30, in days / days_per_unit.
    """
    con = duckdb.connect()
    result = con.execute(
        """
        with raw as (
            select regexp_split_to_array(trim(line), '\\s+') as f
            from read_csv(?, columns = {'line': 'varchar'}, delim = '\t', header = false,
                          quote = '', escape = '')
        ),
        days as (
            select f[1] as customer, strptime(f[3], '%Y%m%d')::date as day
            from raw
            group by all
        )
        select count(*) - 1 as x,
               datediff('day', min(day), max(day)) / ? as t_x,
               datediff('day', min(day), date '1997-09-30') / ? as big_t
        from days
        where day <= date '1997-09-30'
        group by customer
        """,
        [str(CDNOW), days_per_unit, days_per_unit],
    ).fetchnumpy()
    return result["x"], result["t_x"], result["big_t"]


def test_cdnow_calibration_summary_matches_the_paper():
    # The paper: 2,357 customers, 1,411 of them with no repeat purchase in 39 weeks.
    x, t_x, big_t = cdnow_calibration()
    assert x.shape[0] == 2357
    assert int(np.sum(x == 0)) == 1411
    assert float(big_t.max()) == pytest.approx(272 / 7)


def test_cdnow_fit_reproduces_published_parameters():
    fit = fit_bgnbd(*cdnow_calibration())
    assert fit.converged
    assert fit.r == pytest.approx(0.243, rel=0.01)
    assert fit.alpha == pytest.approx(4.414, rel=0.01)
    assert fit.a == pytest.approx(0.793, rel=0.01)
    assert fit.b == pytest.approx(2.426, rel=0.01)
    assert fit.loglik == pytest.approx(-9582.4, abs=0.05)


def test_cdnow_loglik_at_published_parameters():
    assert loglik(0.243, 4.414, 0.793, 2.426, *cdnow_calibration()) == pytest.approx(
        -9582.4, abs=0.05
    )


def test_alpha_follows_the_time_unit():
    # The same data in days: alpha is 7 times the weekly alpha, r, a and b do not change.
    fit = fit_bgnbd(*cdnow_calibration(days_per_unit=1.0))
    assert fit.alpha == pytest.approx(7 * 4.414, rel=0.01)
    assert fit.r == pytest.approx(0.243, rel=0.01)
    assert fit.a == pytest.approx(0.793, rel=0.01)
    assert fit.b == pytest.approx(2.426, rel=0.01)
