"""Peer early-exit strategies run on the same records as DyCE.

* ``global_threshold`` (Shallow-Deep Networks, Zero Time Waste): one exit type at every candidate
  position and one confidence threshold everywhere, swept over a grid.
* ``msdnet`` (MSDNet budgeted batch): for ``q = p/20, p = 1…39`` the exit fractions
  ``P_k ∝ q^k`` over the ``K = P`` exits (one exit type at every candidate position plus the final
  head); each threshold lets ``⌊N·P_k⌋`` search samples leave.
* ``patience`` (PABEE): leave once the top-1 class has stayed the same for ``t`` consecutive exits.

Global-threshold and MSDNet results are ordinary configurations (``[[exit_type, threshold], …]``)
evaluated by :func:`dyce.evaluate.exact.evaluate_config`. A patience result is not a threshold
configuration: it is stored as ``{"patience": t, "exit_type": k}`` and evaluated exactly by
:func:`evaluate_patience`. Risk control lives in :mod:`dyce.runtime.inference`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from dyce.errors import DyceError
from dyce.evaluate.exact import Evaluation, evaluate_config, evaluation_from_exits
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.format import ExitRecords

PEER_METHODS = ("global_threshold", "msdnet", "patience")

#: The sweep parameter each peer strategy records in the result table.
PARAMETER_NAMES = {"global_threshold": "threshold", "msdnet": "q", "patience": "patience"}

# Slack when flooring N·P_k, so that a product like 100 * 0.07 = 7.000000000000001 (or
# 6.999999999999999) counts as the integer it stands for.
_FLOOR_SLACK = 1e-9


@dataclass(frozen=True)
class StrategyResult:
    """One configuration produced by a peer strategy, evaluated on the records it came from.

    Attributes:
        method: ``"global_threshold"``, ``"msdnet"`` or ``"patience"``.
        parameter_name: ``"threshold"``, ``"q"`` or ``"patience"``.
        parameter: the sweep value that produced this configuration.
        exit_type: the exit type used at every candidate position.
        config: ``[[exit_type, threshold], …]`` (``P-1`` pairs), or for patience
            ``{"patience": t, "exit_type": k}``.
        evaluation: exact evaluation on the records the strategy was run on.
    """

    method: str
    parameter_name: str
    parameter: float
    exit_type: int
    config: list[list[float]] | dict
    evaluation: Evaluation


# --------------------------------------------------------------------------- global threshold


def default_thresholds() -> np.ndarray:
    """The default global-threshold grid: ``0.00, 0.01, …, 1.00`` (101 values)."""
    return np.arange(101) / 100.0


def uniform_config(num_positions: int, exit_type: int, thresholds: float | Sequence[float]) -> list:
    """Configuration with ``exit_type`` at each of the ``P-1`` candidate positions.

    ``thresholds``: one threshold for every position, or ``P-1`` of them.
    """
    count = num_positions - 1
    values = [float(thresholds)] * count if np.isscalar(thresholds) else list(thresholds)
    if len(values) != count:
        raise ValueError(f"need {count} thresholds, got {len(values)}")
    return [[int(exit_type), float(value)] for value in values]


def global_threshold(
    records: ExitRecords,
    macs: MacsInfo | dict,
    *,
    exit_types: Iterable[int] | None = None,
    thresholds: Iterable[float] | None = None,
    calibration: bool = False,
    progress: bool = True,
) -> list[StrategyResult]:
    """One exit type everywhere, one threshold everywhere; every (type, threshold) pair.

    ``exit_types`` defaults to every type (each its own series), ``thresholds`` to
    :func:`default_thresholds`.
    """
    macs = load_macs_info(macs)
    types = _exit_types(records, exit_types)
    grid = default_thresholds() if thresholds is None else _check_grid(thresholds, "threshold", 0, 1)
    results = []
    jobs = [(k, float(t)) for k in types for t in grid]
    for exit_type, threshold in tqdm(jobs, desc="global_threshold", disable=not progress):
        config = uniform_config(records.num_positions, exit_type, threshold)
        evaluation = evaluate_config(records, macs, config, calibration=calibration)
        results.append(
            StrategyResult("global_threshold", "threshold", threshold, exit_type, config, evaluation)
        )
    return results


# --------------------------------------------------------------------------- MSDNet


def default_msdnet_qs() -> np.ndarray:
    """The MSDNet budget grid ``q = p/20`` for ``p = 1…39``."""
    return np.arange(1, 40) / 20.0


def msdnet_fractions(q: float, num_exits: int) -> np.ndarray:
    """float64 ``(K,)``: exit fractions ``P_k = q^k / Σ_j q^j`` for ``k = 0 … K-1``."""
    weights = np.power(float(q), np.arange(num_exits, dtype=np.float64))
    return weights / weights.sum()


def msdnet_exit_counts(num_samples: int, fractions: np.ndarray) -> np.ndarray:
    """int64 ``(K,)``: target count ``⌊N·P_k⌋`` of samples leaving at each exit."""
    return np.floor(num_samples * np.asarray(fractions, dtype=np.float64) + _FLOOR_SLACK).astype(
        np.int64
    )


def msdnet_thresholds(confs: np.ndarray, fractions: np.ndarray) -> list[float]:
    """Thresholds of the ``K-1`` candidate exits for the budgeted-batch fractions.

    ``confs``: float array ``(K-1, N)``, top-1 confidence of the chosen exit at each candidate
    position. ``fractions``: ``(K,)`` exit fractions (the last one, the final head's, is unused).
    At exit ``k``, among the samples still in, the threshold ``t_k`` is chosen so that the
    ``n_k = ⌊N·P_k⌋`` most confident leave (``conf > t_k``, strict): ``t_k`` is the ``(n_k+1)``-th
    largest arriving confidence. Ties at that value stay in, so *at most* ``n_k`` leave (the largest
    count ≤ ``n_k`` a strict threshold can achieve). ``n_k = 0`` gives ``t_k = 1``; ``n_k ≥`` the
    number still in gives ``t_k = 0`` (all of them leave).
    """
    confs = np.asarray(confs)
    num_candidates, num_samples = confs.shape
    targets = msdnet_exit_counts(num_samples, fractions)
    still_in = np.ones(num_samples, dtype=bool)
    thresholds = []
    for k in range(num_candidates):
        arriving = confs[k, still_in]
        target = int(targets[k])
        if target <= 0:
            threshold = 1.0
        elif target >= arriving.size:
            threshold = 0.0
        else:
            # Descending order: index `target` is the (target+1)-th largest confidence.
            threshold = float(-np.partition(-arriving, target)[target])
        thresholds.append(threshold)
        still_in &= ~(confs[k] > threshold)
    return thresholds


def msdnet_config(records: ExitRecords, exit_type: int, q: float) -> list[list[float]]:
    """The budgeted-batch configuration for ``q`` with ``exit_type`` at every candidate position."""
    rows = [records.exit_index(p, exit_type) for p in range(records.num_positions - 1)]
    fractions = msdnet_fractions(q, records.num_positions)
    thresholds = msdnet_thresholds(records.top1_confs[rows], fractions)
    return uniform_config(records.num_positions, exit_type, thresholds)


def msdnet(
    records: ExitRecords,
    macs: MacsInfo | dict,
    *,
    exit_types: Iterable[int] | None = None,
    qs: Iterable[float] | None = None,
    calibration: bool = False,
    progress: bool = True,
) -> list[StrategyResult]:
    """MSDNet budgeted batch for every exit type (default all) and ``q`` (default p/20, p=1…39).

    Thresholds are computed on ``records`` and stored as an ordinary configuration, so evaluating
    it on another split applies those thresholds.
    """
    macs = load_macs_info(macs)
    types = _exit_types(records, exit_types)
    grid = default_msdnet_qs() if qs is None else _check_grid(qs, "q", 0, math.inf, open_low=True)
    results = []
    jobs = [(k, float(q)) for k in types for q in grid]
    for exit_type, q in tqdm(jobs, desc="msdnet", disable=not progress):
        config = msdnet_config(records, exit_type, q)
        evaluation = evaluate_config(records, macs, config, calibration=calibration)
        results.append(StrategyResult("msdnet", "q", q, exit_type, config, evaluation))
    return results


# --------------------------------------------------------------------------- patience (PABEE)


def patience_run_lengths(top1_preds: np.ndarray) -> np.ndarray:
    """int ``(P-1, N)``: how many times in a row each candidate exit repeated the previous class.

    ``top1_preds``: int ``(P-1, N)``, top-1 class of the chosen exit type at each candidate
    position. ``run[0] = 0``; ``run[j] = run[j-1] + 1`` if ``class[j] == class[j-1]``, else 0.
    """
    num_candidates, num_samples = top1_preds.shape
    run = np.zeros((num_candidates, num_samples), dtype=np.int32)
    for j in range(1, num_candidates):
        run[j] = np.where(top1_preds[j] == top1_preds[j - 1], run[j - 1] + 1, 0)
    return run


def patience_exit_positions(top1_preds: np.ndarray, patience: int) -> np.ndarray:
    """int64 ``(N,)``: position where each sample leaves under patience ``t``.

    ``top1_preds``: int ``(P-1, N)`` as in :func:`patience_run_lengths`. A sample leaves at the
    first candidate position ``j`` whose class equals the classes of the ``t`` exits before it
    (``class[j] == class[j-1] == … == class[j-t]``, i.e. the class "stayed the same for ``t``
    consecutive exits"). With ``t = 1`` it leaves at the second exit if that exit's class equals
    the first's. Samples that never satisfy it reach the final head, position ``P-1``; with
    ``t ≥ P-1`` that is every sample.
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    run = patience_run_lengths(top1_preds)
    hit = run >= patience
    final_position = top1_preds.shape[0]
    return np.where(hit.any(axis=0), hit.argmax(axis=0), final_position).astype(np.int64)


def patience_config(patience: int, exit_type: int) -> dict:
    """The stored form of a patience setting."""
    return {"patience": int(patience), "exit_type": int(exit_type)}


def is_patience_config(config: object) -> bool:
    """Whether ``config`` (decoded JSON) is a patience setting rather than a threshold list."""
    return isinstance(config, dict) and "patience" in config


def evaluate_patience(
    records: ExitRecords,
    macs: MacsInfo | dict,
    config: dict,
    *,
    calibration: bool = False,
    per_sample: bool = False,
) -> Evaluation:
    """Exact evaluation of ``{"patience": t, "exit_type": k}`` on ``records``.

    Every candidate position runs exit type ``k``, so a sample leaving at ``p`` pays
    ``backbone.macs[p] + Σ_{q ≤ p} head[k].macs[q]`` and one reaching the final head pays the cost
    DyCE charges for the configuration with ``k`` enabled everywhere; its prediction is the top-1
    class of the exit it left at.
    """
    macs = load_macs_info(macs)
    patience_value, exit_type = _check_patience_config(records, config)
    rows = [records.exit_index(p, exit_type) for p in range(records.num_positions - 1)]
    positions = patience_exit_positions(records.top1_preds[rows], patience_value)
    everywhere = uniform_config(records.num_positions, exit_type, 1.0)
    return evaluation_from_exits(records, macs, everywhere, positions, calibration=calibration,
                                 per_sample=per_sample)


def patience(
    records: ExitRecords,
    macs: MacsInfo | dict,
    *,
    exit_types: Iterable[int] | None = None,
    patiences: Iterable[int] | None = None,
    calibration: bool = False,
    progress: bool = True,
) -> list[StrategyResult]:
    """Patience ``t = 1 … P-1`` (default) for every exit type (default all).

    With ``P-1`` candidate exits a sample can leave early only for ``t ≤ P-2``; ``t = P-1`` is the
    end of the sweep where every sample reaches the final head (paying every head).
    """
    macs = load_macs_info(macs)
    types = _exit_types(records, exit_types)
    if patiences is None:
        grid = list(range(1, records.num_positions))
    else:
        grid = [int(t) for t in _check_grid(patiences, "patience", 1, math.inf)]
        if any(t != value for t, value in zip(grid, patiences, strict=True)):
            raise DyceError("patience values must be whole numbers", field="patience")
    results = []
    jobs = [(k, t) for k in types for t in grid]
    for exit_type, value in tqdm(jobs, desc="patience", disable=not progress):
        config = patience_config(value, exit_type)
        evaluation = evaluate_patience(records, macs, config, calibration=calibration)
        results.append(StrategyResult("patience", "patience", float(value), exit_type, config,
                                      evaluation))
    return results


def run_strategy(
    method: str,
    records: ExitRecords,
    macs: MacsInfo | dict,
    *,
    exit_types: Iterable[int] | None = None,
    parameters: Iterable[float] | None = None,
    calibration: bool = False,
    progress: bool = True,
) -> list[StrategyResult]:
    """Run peer strategy ``method`` over ``parameters`` (its own sweep grid when ``None``)."""
    if method == "global_threshold":
        return global_threshold(records, macs, exit_types=exit_types, thresholds=parameters,
                                calibration=calibration, progress=progress)
    if method == "msdnet":
        return msdnet(records, macs, exit_types=exit_types, qs=parameters,
                      calibration=calibration, progress=progress)
    if method == "patience":
        return patience(records, macs, exit_types=exit_types, patiences=parameters,
                        calibration=calibration, progress=progress)
    raise DyceError(f"unknown peer strategy {method!r}; choose from {', '.join(PEER_METHODS)}",
                    field="method")


def evaluate_any(
    records: ExitRecords,
    macs: MacsInfo | dict,
    config: list | dict,
    *,
    calibration: bool = False,
    per_sample: bool = False,
) -> Evaluation:
    """Evaluate a threshold configuration or a patience setting (decoded JSON) on ``records``."""
    if is_patience_config(config):
        return evaluate_patience(records, macs, config, calibration=calibration,
                                 per_sample=per_sample)
    return evaluate_config(records, macs, config, calibration=calibration, per_sample=per_sample)


# --------------------------------------------------------------------------- helpers


def _exit_types(records: ExitRecords, exit_types: Iterable[int] | None) -> list[int]:
    if exit_types is None:
        return list(range(records.num_exit_types))
    types = [int(k) for k in exit_types]
    for k in types:
        if not 0 <= k < records.num_exit_types:
            raise DyceError(
                f"exit type {k} does not exist; the records have {records.num_exit_types} "
                f"({', '.join(records.exit_types)})",
                path=records.source, field="exit_type",
            )
    return types


def _check_grid(values: Iterable[float], name: str, low: float, high: float,
                open_low: bool = False) -> np.ndarray:
    grid = np.asarray(list(values), dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise DyceError("needs at least one value", field=name)
    bad = ~np.isfinite(grid) | (grid > high) | ((grid <= low) if open_low else (grid < low))
    if bad.any():
        interval = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise DyceError(f"value {grid[bad][0]!r} outside {interval}", field=name)
    return grid


def _check_patience_config(records: ExitRecords, config: dict) -> tuple[int, int]:
    patience_value = config.get("patience")
    exit_type = config.get("exit_type")
    for name, value in (("patience", patience_value), ("exit_type", exit_type)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DyceError(f"{name} must be an integer, got {value!r}", field=f"config.{name}")
    if patience_value < 1:
        raise DyceError(f"patience must be >= 1, got {patience_value}", field="config.patience")
    if not 0 <= exit_type < records.num_exit_types:
        raise DyceError(f"exit type {exit_type} does not exist", path=records.source,
                        field="config.exit_type")
    return patience_value, exit_type

