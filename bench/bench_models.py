"""Time the churn and CLV models on a simulated base of members.

Simulates members from known BG/NBD (r=0.25, alpha=4 weeks = 28 days, a=0.8, b=2.5) and
Gamma-Gamma (p=6, q=4, gamma=15) parameters, observed for one to three years, then times:
the BG/NBD fit, the Gamma-Gamma fit, and P(alive), expected purchases over 365 days and CLV
for every member. Two layouts of the same members:

- ``days``: recency and T in whole days, as a nightly run computes them from order days
  (identical rows are merged before the fit, which is what makes a large base cheap);
- ``continuous``: fractional times, so almost no two rows are identical (the worst case).

Usage: python bench/bench_models.py [--members N] [--seed S]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from loyalty_cli.models import (
    clv,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
)

HORIZON_DAYS = 365.0


def simulate(n: int, seed: int):
    """(x, t_x, T, mean spend) in days for n members; vectorised, no loop over members."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = 0.25, 28.0, 0.8, 2.5
    p, q, gamma = 6.0, 4.0, 15.0
    big_t = rng.uniform(365.0, 3 * 365.0, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    drop = np.clip(rng.beta(a, b, n), 1e-12, 1.0)
    arrivals = rng.poisson(lam * big_t)
    x = np.minimum(rng.geometric(drop), arrivals)
    at = rng.beta(np.maximum(x, 1), np.maximum(arrivals - x + 1, 1))
    t_x = np.where(x > 0, big_t * at, 0.0)
    nu = rng.gamma(q, 1.0 / gamma, n)
    xs = np.maximum(x, 1)
    mean_spend = np.where(x > 0, rng.gamma(p * xs, 1.0 / (nu * xs)), 0.0)
    return x, t_x, big_t, mean_spend


def run(x, t_x, big_t, mean_spend) -> dict[str, float]:
    """Seconds per stage for one layout of the members."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    bg = fit_bgnbd(x, t_x, big_t)
    seconds["fit_bgnbd"] = time.perf_counter() - start
    start = time.perf_counter()
    gg = fit_gamma_gamma(x, mean_spend)
    seconds["fit_gamma_gamma"] = time.perf_counter() - start
    start = time.perf_counter()
    alive = p_alive(bg, x, t_x, big_t)
    purchases = expected_purchases(bg, HORIZON_DAYS, x, t_x, big_t)
    seconds["p_alive_and_expected_purchases"] = time.perf_counter() - start
    start = time.perf_counter()
    value = clv(bg, gg, x, t_x, big_t, mean_spend, HORIZON_DAYS)
    seconds["clv"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    print(
        f"  BG/NBD r={bg.r:.3f} alpha={bg.alpha:.2f} a={bg.a:.3f} b={bg.b:.3f} "
        f"converged={bg.converged}; Gamma-Gamma p={gg.p:.2f} q={gg.q:.2f} "
        f"gamma={gg.gamma:.2f} converged={gg.converged}"
    )
    print(
        f"  mean P(alive) {alive.mean():.3f}, mean purchases next year {purchases.mean():.3f}, "
        f"mean CLV next year {value.mean():.2f}"
    )
    return seconds


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20050101)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    x, t_x, big_t, mean_spend = simulate(args.members, args.seed)
    print(f"simulated {args.members:,} members in {time.perf_counter() - start:.2f} s")

    results = {}
    layouts = {
        "days": (x, np.floor(t_x), np.floor(big_t), np.round(mean_spend, 2)),
        "continuous": (x, t_x, big_t, mean_spend),
    }
    for name, columns in layouts.items():
        print(f"{name}:")
        results[name] = run(*columns)
        for stage, secs in results[name].items():
            print(f"  {stage:<32} {secs:8.2f} s")
    return results


if __name__ == "__main__":
    main()
