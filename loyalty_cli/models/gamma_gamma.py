"""Gamma-Gamma spend model, and customer lifetime value from it and BG/NBD.

Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", Journal of Marketing Research 42(4); Fader & Hardie (2013), "The Gamma-Gamma
Model of Monetary Value". A member's transaction values are Gamma(p, nu) around their own
mean p / nu, and nu varies across members as Gamma(q, gamma). The model sees each repeat
buyer through two numbers: ``frequency`` x, the number of repeat transactions, and
``mean_spend``, the mean value of those x transactions. It assumes spend is independent of
the purchase process, which is why it can be multiplied with BG/NBD into a value.

``gamma`` is in money units (the currency of ``mean_spend``), p and q have none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from loyalty_cli.models.bgnbd import (
    BgNbdFit,
    _levels,
    aggregate,
    check_weights,
    expected_purchases,
    maximise,
)


@dataclass(frozen=True)
class GammaGammaFit:
    """Fitted Gamma-Gamma parameters; ``gamma`` is in the currency of the spend."""

    p: float
    q: float
    gamma: float
    loglik: float
    """Log-likelihood of the repeat buyers' mean spend at the fitted parameters."""
    n: float
    """Number of repeat buyers the fit used (sum of their weights)."""
    converged: bool
    """The optimiser found an interior optimum; if False (for example no variation in
    spend), the data do not determine the parameters."""

    def params(self) -> dict[str, float]:
        """The parameters as run.json reports them under ``spend``."""
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


def _check(frequency, mean_spend) -> tuple[np.ndarray, np.ndarray]:
    x, m = np.broadcast_arrays(
        np.asarray(frequency, dtype=float), np.asarray(mean_spend, dtype=float)
    )
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("frequency must be finite and non-negative")
    if not np.all(np.isfinite(m)):
        raise ValueError("mean_spend must be finite")
    return x, m


def _loglik_terms(params, x, m, grad: bool = False, levels=None):
    """Per-buyer log density of the mean spend m of x transactions, and its gradient.

    f(m | p, q, gamma, x) = Gamma(px + q) / (Gamma(px) Gamma(q))
                            * gamma^q m^(px - 1) x^(px) / (gamma + m x)^(px + q)
    The gradient is with respect to (ln p, ln q, ln gamma), shape (3, rows).
    ``levels`` is ``_levels(x)``; the gamma functions depend on x alone.
    """
    p, q, gamma = params
    lx, at = levels if levels is not None else _levels(x)
    px = p * x
    plx = p * lx
    log_gmx = np.log(gamma + m * x)
    log_mx = np.log(m) + np.log(x)
    ll = (
        (special.gammaln(plx + q) - special.gammaln(plx))[at]
        - special.gammaln(q)
        + q * np.log(gamma)
        + px * log_mx
        - np.log(m)
        - (px + q) * log_gmx
    )
    if not grad:
        return ll
    psi_pxq = special.digamma(plx + q)
    d_p = x * ((psi_pxq - special.digamma(plx))[at] + log_mx - log_gmx)
    d_q = psi_pxq[at] - special.digamma(q) + np.log(gamma) - log_gmx
    d_gamma = q / gamma - (px + q) / (gamma + m * x)
    return ll, np.stack([d_p * p, d_q * q, d_gamma * gamma])


def _repeat_buyers(frequency, mean_spend, weights):
    """The rows the model is defined on: x > 0 and a positive mean spend."""
    x, m = _check(frequency, mean_spend)
    x, m = x.ravel(), m.ravel()
    w = check_weights(weights, x.shape[0])
    used = (x > 0) & (m > 0)
    return x[used], m[used], w[used]


def loglik(p: float, q: float, gamma: float, frequency, mean_spend, weights=None) -> float:
    """Total Gamma-Gamma log-likelihood over the repeat buyers with positive mean spend."""
    x, m, w = _repeat_buyers(frequency, mean_spend, weights)
    return float(np.sum(w * _loglik_terms((p, q, gamma), x, m)))


def fit_gamma_gamma(frequency, mean_spend, weights=None) -> GammaGammaFit:
    """Fit Gamma-Gamma by maximum likelihood over the repeat buyers.

    Rows with ``frequency`` 0 (no repeat transaction, so no repeat spend) or a non-positive
    ``mean_spend`` (all spend returned) are outside the model and are not used. Raises
    ValueError when no row is left or the input is not finite.
    """
    x, m, w = _repeat_buyers(frequency, mean_spend, weights)
    rows, counts = aggregate([x, m], w)
    if rows.shape[0] == 0:
        raise ValueError("no repeat buyers with positive mean spend to fit")
    total = float(np.sum(counts))
    # Fit in units of the mean spend, so the parameters are unit-free and near 1;
    # gamma is converted back at the end (it scales with money, p and q do not).
    scale = float(np.dot(counts, rows[:, 1])) / total
    ux, um = rows[:, 0], rows[:, 1] / scale
    levels = _levels(ux)

    def objective(theta):
        params = np.exp(theta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll, gradient = _loglik_terms(params, ux, um, grad=True, levels=levels)
        value = -float(np.dot(counts, ll)) / total
        slope = -(gradient @ counts) / total
        if not np.isfinite(value) or not np.all(np.isfinite(slope)):
            return np.inf, np.zeros(3)
        return value, slope

    # Start at p = 1, q = 2, gamma = 1: a mean transaction p gamma / (q - 1) of 1 mean spend.
    theta, converged = maximise(objective, np.log(np.array([1.0, 2.0, 1.0])))
    p, q, gamma = (float(v) for v in np.exp(theta))
    gamma *= scale
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        total_ll = float(np.dot(counts, _loglik_terms((p, q, gamma), ux, rows[:, 1])))
    converged = converged and bool(np.isfinite(total_ll))
    return GammaGammaFit(p, q, gamma, total_ll, total, converged)


def expected_spend(fit: GammaGammaFit, frequency, mean_spend) -> np.ndarray:
    """Expected value of a member's next transaction, given x and their mean spend.

    E[Z | x, m] = p (gamma + x m) / (p x + q - 1): a weighted average of the population
    mean p gamma / (q - 1) and the member's own mean m, the weight on m growing with x.
    For x = 0 it is the population mean (m is then ignored). Needs q > 1 (a finite
    population mean); for q <= 1 the result is inf or nan.
    """
    x, m = _check(frequency, mean_spend)
    m = np.where(x > 0, m, 0.0)
    p, q, gamma = fit.p, fit.q, fit.gamma
    with np.errstate(divide="ignore", invalid="ignore"):
        return p * (gamma + x * m) / (p * x + q - 1.0)


def clv(
    bgnbd_fit: BgNbdFit,
    gg_fit: GammaGammaFit,
    frequency,
    recency,
    T,
    mean_spend,
    horizon,
) -> np.ndarray:
    """Expected spend over the next ``horizon``: expected purchases times expected spend.

    Undiscounted: a purchase late in the horizon counts as much as one tomorrow. The
    horizon is in the time unit of ``bgnbd_fit`` (the unit of recency and T); the result is
    in the currency of ``mean_spend``.
    """
    purchases = expected_purchases(bgnbd_fit, horizon, frequency, recency, T)
    return purchases * expected_spend(gg_fit, frequency, mean_spend)
