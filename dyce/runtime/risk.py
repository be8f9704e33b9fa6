"""Risk control: the cheapest front configuration whose accuracy loss is bounded with confidence.

Loss of a configuration on calibration sample ``i`` (documented choice, as in RC-EENN):

    loss_i = 1[final head correct on i  and  configuration wrong on i]

so its mean is the fraction of samples the original model gets right and early exiting breaks
(samples the final head already misses cost nothing; an exit that fixes a final-head mistake
does not offset a break elsewhere). The guarantee: with probability at least ``1 - delta`` over
the draw of the calibration split, the chosen configuration's expected loss on new data from
the same distribution is at most ``epsilon``.

Selection is Learn-then-Test with fixed-sequence testing: configurations are ordered from most
to least expensive (by their validation relative MACs, which must not come from the calibration
split), each is tested in turn for ``H0: risk > epsilon`` at level ``delta``, and testing stops at
the first one not rejected. Because every step spends the full ``delta`` only while all earlier
nulls were rejected, the family-wise error is at most ``delta`` with no multiplicity correction.
A configuration passes when the upper confidence bound of its loss is ``<= epsilon``
(equivalently its p-value is ``<= delta``). When none passes, the original model (no exits,
loss 0) is chosen. Pure numpy/scipy; no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from dyce.errors import DyceError
from dyce.records.format import ExitRecords

BOUNDS = ("clopper-pearson", "hoeffding-bentkus")


def risk_losses(records: ExitRecords, predictions: np.ndarray) -> np.ndarray:
    """bool ``(..., N)``: final head correct and configuration prediction wrong, per sample.

    ``predictions``: int ``(..., N)``, the class each configuration predicts for each sample of
    ``records`` (leading axes, e.g. one per configuration, are kept).
    """
    predictions = np.asarray(predictions)
    if predictions.shape[-1] != records.num_samples:
        raise DyceError(
            f"{predictions.shape[-1]} predictions for {records.num_samples} samples",
            path=records.source, field="predictions",
        )
    final_correct = records.correct[-1]
    return final_correct & (predictions != records.labels)


def _check_level(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise DyceError(f"is {value!r}; must lie strictly between 0 and 1", field=name)


def clopper_pearson_upper(num_losses: int, num_samples: int, delta: float) -> float:
    """Exact binomial (Clopper–Pearson) one-sided ``1 - delta`` upper bound of a loss rate."""
    if num_losses >= num_samples:
        return 1.0
    return float(stats.beta.ppf(1.0 - delta, num_losses + 1, num_samples - num_losses))


def _kl_bernoulli(a: float, b: float) -> float:
    """``h1(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b))`` (Bernoulli KL divergence)."""
    return float(special.xlogy(a, a / b) + special.xlogy(1.0 - a, (1.0 - a) / (1.0 - b)))


def hoeffding_bentkus_p_value(empirical_risk: float, num_samples: int, epsilon: float) -> float:
    """Hoeffding–Bentkus p-value of ``H0: risk > epsilon`` for losses in [0, 1] (Bates et al.)."""
    if epsilon >= 1.0 or epsilon <= 0.0:
        return 1.0
    hoeffding = np.exp(-num_samples * _kl_bernoulli(min(empirical_risk, epsilon), epsilon))
    bentkus = np.e * stats.binom.cdf(np.ceil(num_samples * empirical_risk), num_samples, epsilon)
    return float(min(hoeffding, bentkus, 1.0))


def hoeffding_bentkus_upper(empirical_risk: float, num_samples: int, delta: float) -> float:
    """Smallest ``epsilon`` whose Hoeffding–Bentkus p-value is ``<= delta`` (an upper bound)."""
    top = 1.0 - 1e-12
    if hoeffding_bentkus_p_value(empirical_risk, num_samples, top) > delta:
        return 1.0

    def excess(epsilon: float) -> float:
        return hoeffding_bentkus_p_value(empirical_risk, num_samples, epsilon) - delta

    if excess(empirical_risk) <= 0.0:
        return float(empirical_risk)
    # The p-value decreases continuously in epsilon; step past the root's tolerance so that
    # the returned bound itself passes the test.
    root = optimize.brentq(excess, empirical_risk, top, xtol=1e-12)
    return float(min(1.0, root + 1e-10))


def upper_bound(losses: np.ndarray, delta: float, bound: str = "clopper-pearson") -> float:
    """``1 - delta`` upper confidence bound of the mean of binary ``losses`` ``(N,)``."""
    losses = np.asarray(losses, dtype=bool)
    num_samples = int(losses.shape[0])
    if num_samples == 0:
        raise DyceError("no calibration samples", field="calibration_records")
    if bound == "clopper-pearson":
        return clopper_pearson_upper(int(losses.sum()), num_samples, delta)
    if bound == "hoeffding-bentkus":
        return hoeffding_bentkus_upper(float(losses.mean()), num_samples, delta)
    raise DyceError(f"is {bound!r}; choose one of {', '.join(BOUNDS)}", field="bound")


@dataclass(frozen=True)
class RiskTest:
    """One step of the fixed sequence: configuration ``index`` and its bound."""

    index: int
    relative_macs: float
    empirical_loss: float
    upper_bound: float
    passed: bool


@dataclass(frozen=True)
class RiskChoice:
    """Outcome of risk control.

    Attributes:
        index: chosen configuration (into the list given), or ``None`` for the original model
            (no configuration passed).
        epsilon, delta: the requested loss bound and error probability.
        bound: ``"clopper-pearson"`` or ``"hoeffding-bentkus"``.
        num_samples: calibration samples used.
        empirical_loss: mean loss of the choice on the calibration split (0 for the original).
        upper_bound: its ``1 - delta`` upper confidence bound (0 for the original model).
        tests: every configuration tested, in testing order (the last one may have failed).
    """

    index: int | None
    epsilon: float
    delta: float
    bound: str
    num_samples: int
    empirical_loss: float
    upper_bound: float
    tests: tuple[RiskTest, ...]

    def summary(self) -> str:
        """One line for logs and the CLI."""
        chosen = "the original model (no exits)" if self.index is None else f"#{self.index}"
        return (
            f"risk control: chose {chosen}; loss {self.empirical_loss:.4f} on "
            f"{self.num_samples} calibration samples, {self.bound} upper bound "
            f"{self.upper_bound:.4f} <= epsilon {self.epsilon} at delta {self.delta} "
            f"({len(self.tests)} configurations tested)"
        )


def choose_by_risk(
    losses: np.ndarray,
    relative_macs: Sequence[float],
    epsilon: float,
    delta: float,
    bound: str = "clopper-pearson",
) -> RiskChoice:
    """Fixed-sequence (Learn-then-Test) choice of the cheapest configuration with bounded loss.

    ``losses``: bool ``(n_configs, N)`` per-sample losses (see :func:`risk_losses`);
    ``relative_macs``: ``(n_configs,)`` cost used only for the testing order (most expensive
    first; ties keep list order). Returns a :class:`RiskChoice`.
    """
    _check_level(epsilon, "epsilon")
    _check_level(delta, "delta")
    if bound not in BOUNDS:
        raise DyceError(f"is {bound!r}; choose one of {', '.join(BOUNDS)}", field="bound")
    losses = np.asarray(losses, dtype=bool)
    costs = np.asarray(relative_macs, dtype=np.float64)
    if losses.ndim != 2 or costs.shape != (losses.shape[0],):
        raise DyceError(
            f"losses {losses.shape} and relative MACs {costs.shape} do not match", field="losses"
        )
    num_samples = int(losses.shape[1])
    if num_samples == 0:
        raise DyceError("no calibration samples", field="calibration_records")
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    tests: list[RiskTest] = []
    chosen: RiskTest | None = None
    for index in order:
        value = upper_bound(losses[index], delta, bound)
        passed = value <= epsilon
        test = RiskTest(index, float(costs[index]), float(losses[index].mean()), value, passed)
        tests.append(test)
        if not passed:
            break
        chosen = test
    return RiskChoice(
        index=None if chosen is None else chosen.index,
        epsilon=float(epsilon),
        delta=float(delta),
        bound=bound,
        num_samples=num_samples,
        empirical_loss=0.0 if chosen is None else chosen.empirical_loss,
        upper_bound=0.0 if chosen is None else chosen.upper_bound,
        tests=tuple(tests),
    )
