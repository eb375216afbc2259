"""Gamma-Gamma and CLV: hand-computed values, parameter recovery, the published CDNOW fit."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from loyalty_cli.models import (
    BgNbdFit,
    GammaGammaFit,
    clv,
    expected_spend,
    fit_gamma_gamma,
)
from loyalty_cli.models.gamma_gamma import loglik

CDNOW = Path(__file__).parent / "data" / "cdnow" / "CDNOW_sample.txt"


def _gg(p, q, gamma) -> GammaGammaFit:
    return GammaGammaFit(p=p, q=q, gamma=gamma, loglik=0.0, n=1.0, converged=True)


# --- hand-computed values ------------------------------------------------------------------


def test_expected_spend_by_hand():
    fit = _gg(6.0, 4.0, 15.0)
    # x=2, m=20: p (gamma + x m) / (p x + q - 1) = 6 * 55 / 15 = 22.
    # x=0: the population mean p gamma / (q - 1) = 90 / 3 = 30, whatever m says.
    # x=2, m=30: 6 * 75 / 15 = 30 (a member at the population mean stays there).
    got = expected_spend(fit, [2, 0, 2], [20.0, 99.0, 30.0])
    assert got.tolist() == pytest.approx([22.0, 30.0, 30.0], rel=1e-12)


def test_loglik_of_one_buyer_by_hand():
    # f = Gamma(px+q)/(Gamma(px) Gamma(q)) gamma^q m^(px-1) x^(px) / (gamma + m x)^(px+q)
    # p=1, q=2, gamma=1, x=1, m=1: Gamma(3)/(Gamma(1) Gamma(2)) * 1 / 2^3 = 2/8 = 1/4.
    assert loglik(1.0, 2.0, 1.0, [1], [1.0]) == pytest.approx(math.log(1 / 4), rel=1e-12)
    # p=2, q=3, gamma=4, x=2, m=3: px = 4,
    # Gamma(7)/(Gamma(4) Gamma(3)) = 720/12 = 60; 4^3 = 64; 3^3 = 27; 2^4 = 16;
    # (4 + 6)^7 = 1e7 -> f = 60 * 64 * 27 * 16 / 1e7 = 0.165888.
    assert loglik(2.0, 3.0, 4.0, [2], [3.0]) == pytest.approx(math.log(0.165888), rel=1e-12)


def test_clv_by_hand():
    # BG/NBD r=2, alpha=1, a=2, b=1 (r = a + b - 1, where eq. 10 is elementary); x=2, t_x=1,
    # T=3, horizon 4: E[purchases] = 2/17 (see test_models_bgnbd). Expected spend with
    # p=6, q=4, gamma=15 and m=20 is 22, so CLV = 44/17.
    bg = BgNbdFit(r=2.0, alpha=1.0, a=2.0, b=1.0, loglik=0.0, n=1.0, converged=True)
    got = clv(bg, _gg(6.0, 4.0, 15.0), 2, 1.0, 3.0, 20.0, 4.0)
    assert got == pytest.approx(44 / 17, rel=1e-12)
    # x=0: 1 expected purchase (see test_models_bgnbd) at the population mean 30.
    got = clv(bg, _gg(6.0, 4.0, 15.0), [0], [0.0], [3.0], [0.0], 4.0)
    assert got.tolist() == pytest.approx([30.0], rel=1e-12)


# --- input handling ------------------------------------------------------------------------


def test_rows_outside_the_model_are_not_used():
    x = np.array([1, 2, 3, 1, 4, 2, 6, 1])
    m = np.array([10.0, 25.0, 12.5, 40.0, 18.0, 30.0, 22.0, 15.0])
    clean = fit_gamma_gamma(x, m)
    # One-time buyers (x = 0) and buyers whose spend was all returned (m <= 0) add nothing.
    padded = fit_gamma_gamma(np.r_[x, 0, 0, 3], np.r_[m, 50.0, 0.0, 0.0])
    assert padded.n == clean.n == 8
    for name in ("p", "q", "gamma", "loglik"):
        assert getattr(padded, name) == pytest.approx(getattr(clean, name), rel=1e-9)


def test_weights_are_counts_of_identical_rows():
    x = np.array([1, 2, 3, 1, 4, 2, 6, 1])
    m = np.array([10.0, 25.0, 12.5, 40.0, 18.0, 30.0, 22.0, 15.0])
    counts = np.array([5, 3, 1, 2, 1, 4, 1, 7])
    weighted = fit_gamma_gamma(x, m, weights=counts)
    expanded = fit_gamma_gamma(np.repeat(x, counts), np.repeat(m, counts))
    assert weighted.n == expanded.n == counts.sum()
    for name in ("p", "q", "gamma", "loglik"):
        assert getattr(weighted, name) == pytest.approx(getattr(expanded, name), rel=1e-6)


def test_no_repeat_buyer_is_refused():
    with pytest.raises(ValueError):
        fit_gamma_gamma([0, 0], [10.0, 20.0])
    with pytest.raises(ValueError):
        fit_gamma_gamma([1], [np.inf])


def test_identical_spend_is_not_a_converged_fit():
    # Every buyer spends exactly 20 each time: no variation within or between buyers, so
    # the likelihood grows without limit as p and q grow; there is no optimum to report.
    fit = fit_gamma_gamma([1, 2, 3, 4, 5, 6], [20.0] * 6)
    assert not fit.converged


# --- parameter recovery --------------------------------------------------------------------


def test_recovers_simulated_parameters():
    rng = np.random.default_rng(20050101)
    n = 100_000
    # Repeat transactions of 100,000 members over one to three years of weeks, from a
    # BG/NBD population (r=0.25, alpha=4, a=0.8, b=2.5), as test_models_bgnbd simulates it.
    big_t = rng.uniform(52.0, 156.0, n)
    lam = rng.gamma(0.25, 1.0 / 4.0, n)
    drop = np.clip(rng.beta(0.8, 2.5, n), 1e-12, 1.0)
    x = np.minimum(rng.geometric(drop), rng.poisson(lam * big_t))
    # Spend: nu ~ Gamma(q, rate gamma) per member; each transaction ~ Gamma(p, rate nu),
    # so the mean of x transactions is Gamma(p x, rate nu x).
    p, q, gamma = 6.0, 4.0, 15.0
    nu = rng.gamma(q, 1.0 / gamma, n)
    xs = np.maximum(x, 1)
    mean_spend = rng.gamma(p * xs, 1.0 / (nu * xs))
    fit = fit_gamma_gamma(x, mean_spend)
    assert fit.converged
    assert fit.n == np.sum(x > 0)
    assert fit.p == pytest.approx(p, rel=0.10)
    assert fit.q == pytest.approx(q, rel=0.10)
    assert fit.gamma == pytest.approx(gamma, rel=0.10)


# --- published figures on CDNOW ------------------------------------------------------------


def cdnow_repeat_spend():
    """(x, mean spend) of CDNOW's repeat buyers in the 39-week calibration period.

    Transactions are summed per day; the first purchase day is left out, so the mean is over
    the x repeat purchase days up to and including 1997-09-30 (the definition that yields
    the published figures; including the first day gives p ~ 14, gamma ~ 7).
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
            select f[1] as customer, strptime(f[3], '%Y%m%d')::date as day,
                   sum(f[5]::decimal(10, 2)) as value
            from raw
            group by all
        ),
        calibration as (
            select *, min(day) over (partition by customer) as first_day
            from days
            where day <= date '1997-09-30'
        )
        select count(*) as x, avg(value)::double as mean_spend
        from calibration
        where day > first_day
        group by customer
        """,
        [str(CDNOW)],
    ).fetchnumpy()
    return result["x"], result["mean_spend"]


def test_cdnow_repeat_buyers():
    x, _ = cdnow_repeat_spend()
    assert x.shape[0] == 946  # 2,357 customers less the 1,411 without a repeat purchase


def test_cdnow_fit_reproduces_published_parameters():
    fit = fit_gamma_gamma(*cdnow_repeat_spend())
    assert fit.converged
    assert fit.p == pytest.approx(6.25, rel=0.02)
    assert fit.q == pytest.approx(3.74, rel=0.02)
    assert fit.gamma == pytest.approx(15.44, rel=0.02)


def test_gamma_follows_the_currency_unit():
    # The same spend in cents: gamma is 100 times the published figure, p and q unchanged.
    x, mean_spend = cdnow_repeat_spend()
    fit = fit_gamma_gamma(x, mean_spend * 100)
    assert fit.p == pytest.approx(6.25, rel=0.02)
    assert fit.q == pytest.approx(3.74, rel=0.02)
    assert fit.gamma == pytest.approx(1544, rel=0.02)
