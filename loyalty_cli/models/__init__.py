"""Statistical models of member behaviour, as pure vectorised functions.

- BG/NBD (``bgnbd``): expected repeat purchases and the probability a member is still active,
  from frequency, recency and age (T).
- Gamma-Gamma (``gamma_gamma``): expected value of a transaction, from the number and mean
  value of a member's repeat transactions; combined with BG/NBD into ``clv``.

No function here reads or writes state: arrays in, numbers out. docs/models.md explains
inputs, units and limits.
"""

from loyalty_cli.models.bgnbd import BgNbdFit, expected_purchases, fit_bgnbd, p_alive
from loyalty_cli.models.gamma_gamma import (
    GammaGammaFit,
    clv,
    expected_spend,
    fit_gamma_gamma,
)

__all__ = [
    "BgNbdFit",
    "GammaGammaFit",
    "clv",
    "expected_purchases",
    "expected_spend",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "p_alive",
]
