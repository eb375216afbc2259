"""BG/NBD: how many more purchases a member will make, and whether they are still active.

Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2). While active, a member buys at a Poisson rate
lambda ~ Gamma(r, alpha) (shape r, rate alpha); after each repeat purchase they become inactive
for good with probability p ~ Beta(a, b). A member is summarised by three numbers:

- ``frequency`` x: the number of repeat purchases (purchases after the first),
- ``recency`` t_x: time from the first purchase to the last one (0 when x = 0),
- ``T``: time from the first purchase to the end of the observation period,

all in one time unit chosen by the caller; ``alpha`` comes out in that unit (the scale of the
purchase rate), the other three parameters have no unit.

The fit is maximum likelihood over log-parameters. Identical (x, t_x, T) rows are merged
first and the special functions are evaluated once per distinct x, so a base of a million
members whose times are whole days fits in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

#: Bounds of the log-parameters during the fit: parameters stay within [1e-8, 1e8].
_LOG_BOUND = 8.0 * np.log(10.0)
#: A fit whose unit-free parameters leave [1e-6, 1e6] is running off to a limit of the
#: model (no drop-out: a, b -> inf; no variation: shape -> inf) rather than an optimum.
_LOG_PLAUSIBLE = 6.0 * np.log(10.0)
#: Largest gradient of the mean log-likelihood (per log-parameter) accepted as an optimum
#: when the line search stops without reporting success.
_GRADIENT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class BgNbdFit:
    """Fitted BG/NBD parameters; ``alpha`` is in the time unit of the data it was fitted on."""

    r: float
    alpha: float
    a: float
    b: float
    loglik: float
    """Log-likelihood of the data at the fitted parameters (summed over members)."""
    n: float
    """Number of members the fit used (sum of the weights)."""
    converged: bool
    """The optimiser found an interior optimum (see ``maximise``); if False, the data do not
    determine the parameters and they should not be used for forecasts."""

    def params(self) -> dict[str, float]:
        """The parameters as run.json reports them."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def check_weights(weights, n: int) -> np.ndarray:
    """Weights as a float array of length n (ones when None), or ValueError."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float).ravel()
    if w.shape[0] != n:
        raise ValueError(f"weights has {w.shape[0]} values, expected {n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    return w


def check_rft(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and broadcast (frequency, recency, T) to float arrays of one shape."""
    x, t_x, big_t = np.broadcast_arrays(
        np.asarray(frequency, dtype=float),
        np.asarray(recency, dtype=float),
        np.asarray(T, dtype=float),
    )
    for name, arr in (("frequency", x), ("recency", t_x), ("T", big_t)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
        if np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative")
    if np.any(t_x > big_t):
        raise ValueError("recency must not exceed T")
    return x, t_x, big_t


def aggregate(columns: list[np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical rows of ``columns``: (unique rows as an (m, k) array, summed weights).

    Rows with zero weight are dropped first; they do not change a likelihood. The rows come
    out sorted by the first column, then the second, and so on.
    """
    keep = weights > 0
    stacked = np.column_stack([c[keep] for c in columns])
    if stacked.shape[0] == 0:
        return stacked, np.zeros(0)
    order = np.lexsort(stacked.T[::-1])
    stacked = stacked[order]
    new_row = np.ones(stacked.shape[0], dtype=bool)
    new_row[1:] = np.any(stacked[1:] != stacked[:-1], axis=1)
    starts = np.flatnonzero(new_row)
    return stacked[starts], np.add.reduceat(weights[keep][order], starts)


def _levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of x and the index of each row's value: the special functions of
    the likelihood depend on x alone, so they are evaluated once per distinct x."""
    levels, inverse = np.unique(x, return_inverse=True)
    return levels, inverse.ravel()


def _loglik_terms(params, x, t_x, big_t, grad: bool = False, levels=None):
    """Per-row log-likelihood of BG/NBD (paper eq. 6), and optionally its gradient.

    ll = A1 + log(exp(A2) + [x > 0] exp(A3)) with
      A1 = lnGamma(r + x) - lnGamma(r) + r ln(alpha)
      A2 = lnB(a, b + x) - lnB(a, b) - (r + x) ln(alpha + T)
      A3 = lnB(a + 1, b + x - 1) - lnB(a, b) - (r + x) ln(alpha + t_x)
    The gradient is with respect to (ln r, ln alpha, ln a, ln b), shape (4, rows).
    ``levels`` is ``_levels(x)``, passed in by a fit that evaluates many times.
    """
    r, alpha, a, b = params
    lx, at = levels if levels is not None else _levels(x)
    repeat = x > 0
    # For x = 0 the second term is absent; evaluate it at x = 1 and mask it, so that
    # b + x - 1 never drops below b (B(a + 1, b - 1) is undefined for b <= 1).
    lx1 = np.where(lx > 0, lx, 1.0)
    log_alpha_t = np.log(alpha + big_t)
    log_alpha_tx = np.log(alpha + t_x)
    lnb_ab = special.betaln(a, b)
    a1 = special.gammaln(r + lx)[at] - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + lx)[at] - lnb_ab - (r + x) * log_alpha_t
    a3 = special.betaln(a + 1.0, b + lx1 - 1.0)[at] - lnb_ab - (r + x) * log_alpha_tx
    a3 = np.where(repeat, a3, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lse = np.logaddexp(a2, a3)
    ll = a1 + lse
    if not grad:
        return ll
    # Share of each of the two terms in the sum (a softmax; w3 = 0 for x = 0).
    w2 = np.exp(a2 - lse)
    w3 = np.where(repeat, np.exp(a3 - lse), 0.0)
    psi = special.digamma
    psi_ab = psi(a + b)
    psi_abx = psi(a + b + lx)
    d_r = (psi(r + lx) - psi(r))[at] + np.log(alpha) - w2 * log_alpha_t - w3 * log_alpha_tx
    d_alpha = r / alpha - (r + x) * (w2 / (alpha + big_t) + w3 / (alpha + t_x))
    d_a2_a = (psi_ab - psi_abx)[at]
    d_a3_a = (psi(a + 1.0) - psi(a) + psi_ab - psi_abx)[at]
    d_a = w2 * d_a2_a + w3 * d_a3_a
    d_a2_b = (psi(b + lx) - psi_abx - psi(b) + psi_ab)[at]
    d_a3_b = (psi(b + lx1 - 1.0) - psi_abx - psi(b) + psi_ab)[at]
    d_b = w2 * d_a2_b + w3 * d_a3_b
    gradient = np.stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return ll, gradient


def loglik(r: float, alpha: float, a: float, b: float, frequency, recency, T, weights=None):
    """Total BG/NBD log-likelihood of the members at the given parameters."""
    x, t_x, big_t = check_rft(frequency, recency, T)
    x, t_x, big_t = x.ravel(), t_x.ravel(), big_t.ravel()
    w = check_weights(weights, x.shape[0])
    return float(np.sum(w * _loglik_terms((r, alpha, a, b), x, t_x, big_t)))


def maximise(objective, theta0: np.ndarray) -> tuple[np.ndarray, bool]:
    """Minimise a mean negative log-likelihood over log-parameters with L-BFGS-B.

    Returns the log-parameters and whether they are an interior optimum: the optimiser
    stopped with a flat gradient and no parameter ran off towards 0 or infinity. The
    parameters must be unit-free (the caller rescales its data) for that test to mean the
    same in every currency and time unit.
    """
    result = optimize.minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(theta0),
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    theta = np.asarray(result.x, dtype=float)
    flat = bool(result.success) or bool(np.max(np.abs(result.jac)) <= _GRADIENT_TOLERANCE)
    plausible = bool(np.all(np.abs(theta) <= _LOG_PLAUSIBLE))
    return theta, flat and plausible and bool(np.isfinite(result.fun))


def fit_bgnbd(frequency, recency, T, weights=None) -> BgNbdFit:
    """Fit BG/NBD by maximum likelihood.

    ``frequency``, ``recency`` and ``T`` are one value per member (or per group of identical
    members, with ``weights`` the group sizes); times are in the caller's unit. Raises
    ValueError for empty, non-finite or inconsistent input (recency > T, negative values).
    ``converged`` is False when the data do not pin the parameters down (no repeat
    purchase at all, or no sign of drop-out so a and b grow without limit); the
    parameters are then the last iterate and should not be used for forecasts.
    """
    x, t_x, big_t = check_rft(frequency, recency, T)
    x, t_x, big_t = x.ravel(), t_x.ravel(), big_t.ravel()
    w = check_weights(weights, x.shape[0])
    rows, counts = aggregate([x, t_x, big_t], w)
    total = float(np.sum(counts))
    if rows.shape[0] == 0:
        raise ValueError("no members to fit")
    ux = rows[:, 0]
    # Fit in units of the mean age, so the parameters are unit-free and near 1;
    # alpha is converted back at the end (alpha scales with time, r, a, b do not).
    scale = float(np.dot(counts, rows[:, 2])) / total
    if not scale > 0:
        scale = 1.0
    utx, ut = rows[:, 1] / scale, rows[:, 2] / scale
    levels = _levels(ux)

    def objective(theta):
        params = np.exp(theta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll, gradient = _loglik_terms(params, ux, utx, ut, grad=True, levels=levels)
        value = -float(np.dot(counts, ll)) / total
        slope = -(gradient @ counts) / total
        if not np.isfinite(value) or not np.all(np.isfinite(slope)):
            return np.inf, np.zeros(4)
        return value, slope

    # Start at r = a = b = 1 with alpha matching the average purchase rate (1 if none).
    rate = float(np.dot(counts, ux)) / float(np.dot(counts, ut)) if np.any(ut > 0) else 0.0
    theta0 = np.log(np.array([1.0, 1.0 / rate if rate > 0 else 1.0, 1.0, 1.0]))
    theta, converged = maximise(objective, theta0)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    alpha *= scale
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        total_ll = float(
            np.dot(counts, _loglik_terms((r, alpha, a, b), ux, rows[:, 1], rows[:, 2]))
        )
    # Without a single repeat purchase the likelihood only approaches its supremum
    # (r -> 0) and says nothing about a and b: there is no fit to report.
    converged = converged and bool(np.isfinite(total_ll)) and bool(np.any(ux > 0))
    return BgNbdFit(r, alpha, a, b, total_ll, total, converged)


def p_alive(fit: BgNbdFit, frequency, recency, T) -> np.ndarray:
    """P(a member is still active at T | x, t_x, T) (paper eq. 12; 1 when x = 0).

    1 / (1 + [x > 0] a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)),
    computed as a logistic function of the log-odds so it neither overflows nor divides 0/0.
    """
    x, t_x, big_t = check_rft(frequency, recency, T)
    repeat = x > 0
    x1 = np.where(repeat, x, 1.0)
    log_odds = (
        np.log(fit.a)
        - np.log(fit.b + x1 - 1.0)
        + (fit.r + x) * (np.log(fit.alpha + big_t) - np.log(fit.alpha + t_x))
    )
    return np.where(repeat, special.expit(-log_odds), 1.0)


def expected_purchases(fit: BgNbdFit, t, frequency, recency, T) -> np.ndarray:
    """Expected number of purchases in the next ``t`` time units (paper eq. 10).

    E[Y(t) | x, t_x, T] =
      (a + b + x - 1) / (a - 1) * [1 - ((alpha + T) / (alpha + T + t))^(r + x)
                                   * 2F1(r + x, b + x; a + b + x - 1; z)]
      / (1 + [x > 0] a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)),
    z = t / (alpha + T + t). The hypergeometric term is evaluated after Euler's
    transformation 2F1(A, B; C; z) = (1 - z)^(C - A - B) 2F1(C - A, C - B; C; z), which is
    the same number but stays finite for frequent buyers and long horizons, where the
    original 2F1 grows like (1 - z)^-(x + r) and the bracket would lose every digit.
    The formula has a removable singularity at a = 1; fits land there with probability 0.
    """
    x, t_x, big_t = check_rft(frequency, recency, T)
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("t must be finite and non-negative")
    x, t_x, big_t, t = np.broadcast_arrays(x, t_x, big_t, t)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    c = a + b + x - 1.0
    z = t / (alpha + big_t + t)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; c; z)
        #   = (1 - z)^(a - 1) * 2F1(a + b - 1 - r, a - 1; c; z)
        tail = np.exp((a - 1.0) * np.log1p(-z)) * special.hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        numerator = c / (a - 1.0) * (1.0 - tail)
    return numerator * p_alive(fit, x, t_x, big_t)
