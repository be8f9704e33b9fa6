"""Exact evaluation of an exit configuration on exit records.

Semantics (``docs/semantics.md``): a sample leaves at the first enabled candidate position whose
top-1 confidence is strictly greater than that position's threshold (compared in float64),
otherwise it reaches the final head. Its prediction is the top-1 class of the exit it left at.
Leaving at ``p`` costs ``backbone.macs[p] + Σ head[k_q].macs[q]`` over the enabled positions
``q ≤ p``; reaching the end costs ``ori_macs`` plus every enabled head.

:func:`evaluate_config` is the vectorised evaluator; :func:`brute_force_evaluate` is a plain
per-sample loop that computes the same figures independently (the tests' oracle). Both return
bit-identical floats: MAC means are computed exactly (rational arithmetic) and rounded once.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from dyce.errors import DyceError
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.format import ExitRecords, check_compatible

#: Quantile of the Beta posterior used by calibrated accuracy (a conservative 10 % bound).
CALIBRATION_QUANTILE = 0.1


@dataclass(frozen=True)
class Evaluation:
    """Figures of one configuration on one record.

    Attributes:
        relative_macs: mean MACs per sample / ``ori_macs``.
        raw_macs: mean MACs per sample (MACs).
        relative_acc: ``raw_acc`` / accuracy of the final head alone (NaN if that is 0).
        raw_acc: top-1 accuracy in ``[0, 1]`` (the calibrated accuracy when ``calibrated``).
        exit_ratio: ``P`` fractions of samples leaving at each position (last = final head).
        num_samples: ``N``.
        calibrated: whether ``raw_acc`` is the calibrated accuracy.
        exit_position: int16 ``(N,)`` position each sample left at (only with ``per_sample``).
        prediction: int ``(N,)`` predicted class of each sample (only with ``per_sample``).
    """

    relative_macs: float
    raw_macs: float
    relative_acc: float
    raw_acc: float
    exit_ratio: tuple[float, ...]
    num_samples: int
    calibrated: bool = False
    exit_position: np.ndarray | None = field(default=None, compare=False, repr=False)
    prediction: np.ndarray | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------- validation


def check_inputs(records: ExitRecords, macs: MacsInfo | dict | str) -> MacsInfo:
    """Load ``macs`` and check that it describes the same positions and exit types as ``records``
    (:func:`dyce.records.check_compatible`: counts, and head names where the macs_info has them)."""
    info = load_macs_info(macs)
    check_compatible(records, info)
    if records.num_samples == 0:
        raise DyceError("the records hold no samples", path=records.source, field="label")
    return info


def check_config(
    config: Sequence[Sequence[float]], num_positions: int, num_exit_types: int, *,
    field: str = "config", path: str | None = None,
) -> list[tuple[int, float]]:
    """Validate a configuration and return it as ``P-1`` pairs ``(exit_type, threshold)``.

    ``exit_type`` must be a whole number in ``[-1, T)`` (``-1`` = no exit), ``threshold`` a
    finite number in ``[0, 1]``. Raises :class:`DyceError` naming ``path`` (the file the
    configuration came from, if any) and ``field``.
    """
    if isinstance(config, (str, bytes)) or not isinstance(config, Sequence):
        raise DyceError(f"must be a list of [exit_type, threshold] pairs, got {config!r}",
                        path=path, field=field)
    if len(config) != num_positions - 1:
        raise DyceError(
            f"has {len(config)} entries; {num_positions} positions need {num_positions - 1}",
            path=path, field=field,
        )
    pairs = []
    for position, entry in enumerate(config):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise DyceError(f"entry {position} is {entry!r}, not [exit_type, threshold]",
                            path=path, field=field)
        exit_type, threshold = entry
        if (isinstance(exit_type, bool) or not isinstance(exit_type, numbers.Real)
                or not math.isfinite(exit_type) or int(exit_type) != exit_type
                or not -1 <= exit_type < num_exit_types):
            raise DyceError(
                f"entry {position}: exit type {exit_type!r} is not -1 or in [0, {num_exit_types})",
                path=path, field=field,
            )
        if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0):
            raise DyceError(f"entry {position}: threshold {threshold!r} is not in [0, 1]",
                            path=path, field=field)
        pairs.append((int(exit_type), float(threshold)))
    return pairs


# --------------------------------------------------------------------------- building blocks


def exceeds(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """bool array: ``confidence > threshold`` compared in float64 (``confidence`` any float array).

    For float32 confidences this compares against the largest float32 not above ``threshold``,
    which gives the float64 answer without a float64 copy of the array.
    """
    threshold = float(threshold)
    if confidence.dtype == np.float32:
        bound = np.float32(threshold)
        if float(bound) > threshold:
            bound = np.nextafter(bound, np.float32(-np.inf))
        return confidence > bound
    return confidence.astype(np.float64) > threshold


def position_macs(macs: MacsInfo, config: Sequence[tuple[int, float]]) -> np.ndarray:
    """float64 ``(P,)``: MACs of a sample leaving at each position under ``config``.

    Entry ``p < P-1`` is ``backbone.macs[p]`` plus the heads of the enabled positions ``q ≤ p``
    (added in position order); the last entry is ``ori_macs`` plus every enabled head. Entries of
    disabled positions are what leaving there would cost (no sample does).
    """
    num_positions = macs.num_positions
    out = np.empty(num_positions, dtype=np.float64)
    passed = 0.0
    for position, (exit_type, _threshold) in enumerate(config):
        if exit_type >= 0:
            passed = passed + float(macs.head_macs[exit_type, position])
        out[position] = float(macs.backbone_macs[position]) + passed
    out[num_positions - 1] = float(macs.ori_macs) + passed
    return out


def exit_positions(records: ExitRecords, config: Sequence[tuple[int, float]]) -> np.ndarray:
    """int16 ``(N,)``: position each sample leaves at (``P-1`` = final head)."""
    last = records.num_positions - 1
    positions = np.full(records.num_samples, last, dtype=np.int16)
    remaining = np.ones(records.num_samples, dtype=bool)
    confs = records.top1_confs
    for position, (exit_type, threshold) in enumerate(config):
        if exit_type < 0:
            continue
        leave = exceeds(confs[records.exit_index(position, exit_type)], threshold)
        leave &= remaining
        positions[leave] = position
        remaining &= ~leave
    return positions


def exit_rows(records: ExitRecords, config: Sequence[tuple[int, float]]) -> np.ndarray:
    """int64 ``(P,)``: record row (exit index) a sample leaving at each position used; -1 if none."""
    rows = [records.exit_index(p, k) if k >= 0 else -1 for p, (k, _t) in enumerate(config)]
    return np.asarray(rows + [records.num_exits - 1], dtype=np.int64)


def calibrated_accuracy(exit_counts: Sequence[int], correct_counts: Sequence[int],
                        num_samples: int) -> float:
    """``Σ_p betaincinv(1 + c_p, 1 + n_p − c_p, 0.1) · (n_p / N)`` over positions with ``n_p > 0``.

    Summed in position order (so every implementation gets the same float).
    """
    from scipy.special import betaincinv

    total = 0.0
    for count, correct in zip(exit_counts, correct_counts, strict=True):
        count, correct = int(count), int(correct)
        if count > 0:
            bound = float(betaincinv(1 + correct, 1 + count - correct, CALIBRATION_QUANTILE))
            total = total + bound * (count / num_samples)
    return total


def evaluation_from_counts(
    exit_counts: Sequence[int],
    correct_counts: Sequence[int],
    leave_macs: np.ndarray,
    ori_macs: float,
    final_correct: int,
    *,
    calibration: bool = False,
) -> Evaluation:
    """An :class:`Evaluation` from per-position counts (the exact aggregation every path shares).

    Args:
        exit_counts: ``P`` numbers of samples leaving at each position.
        correct_counts: ``P`` numbers of those that are right.
        leave_macs: float64 ``(P,)`` MACs of leaving at each position (:func:`position_macs`).
        ori_macs: MACs of the original model.
        final_correct: number of samples the final head alone gets right.
        calibration: report the calibrated accuracy as ``raw_acc``.
    """
    num_samples = int(sum(int(n) for n in exit_counts))
    macs_values = [float(m) for m in leave_macs]
    ori = float(ori_macs)
    if ori.is_integer() and all(m.is_integer() for m in macs_values):
        # Whole MACs (thop counts): the same exact sum in Python ints, and int / int is
        # correctly rounded like float(Fraction), so the floats are identical, 20x faster.
        total = sum(int(n) * int(m) for n, m in zip(exit_counts, macs_values, strict=True))
        raw_macs = total / num_samples
        relative_macs = total / (num_samples * int(ori))
    else:
        total_macs = sum((int(n) * Fraction(m) for n, m in zip(exit_counts, macs_values,
                                                                strict=True)), Fraction(0))
        raw_macs = float(total_macs / num_samples)
        relative_macs = float(total_macs / (num_samples * Fraction(ori)))
    correct = int(sum(int(c) for c in correct_counts))
    if calibration:
        raw_acc = calibrated_accuracy(exit_counts, correct_counts, num_samples)
        relative_acc = raw_acc / (final_correct / num_samples) if final_correct else math.nan
    else:
        raw_acc = correct / num_samples
        relative_acc = correct / final_correct if final_correct else math.nan
    return Evaluation(
        relative_macs=relative_macs,
        raw_macs=raw_macs,
        relative_acc=relative_acc,
        raw_acc=raw_acc,
        exit_ratio=tuple(int(n) / num_samples for n in exit_counts),
        num_samples=num_samples,
        calibrated=calibration,
    )


def evaluation_from_exits(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    config: Sequence[Sequence[float]],
    exit_position: np.ndarray,
    *,
    calibration: bool = False,
    per_sample: bool = False,
) -> Evaluation:
    """Figures of given per-sample exit positions, charged with the MACs of ``config``.

    For strategies whose exit decision is not a threshold (e.g. patience): ``exit_position`` is
    int ``(N,)`` in ``[0, P)``; a sample at ``p < P-1`` is predicted by exit type
    ``config[p][0]`` there (which must be enabled) and pays :func:`position_macs` of ``config``.
    """
    info = check_inputs(records, macs)
    pairs = check_config(config, records.num_positions, records.num_exit_types)
    exit_position = np.asarray(exit_position)
    num_positions = records.num_positions
    if exit_position.shape != (records.num_samples,) or not np.issubdtype(exit_position.dtype,
                                                                           np.integer):
        raise DyceError(f"exit positions must be integers of shape ({records.num_samples},)",
                        field="exit_position")
    rows = exit_rows(records, pairs)
    if exit_position.size and (exit_position.min() < 0 or exit_position.max() >= num_positions
                               or (rows[exit_position] < 0).any()):
        raise DyceError("exit positions must be enabled positions of the configuration",
                        field="exit_position")
    sample_rows = rows[exit_position]
    sample_index = np.arange(records.num_samples)
    right = records.correct[sample_rows, sample_index]
    exit_counts = np.bincount(exit_position, minlength=num_positions)
    correct_counts = np.bincount(exit_position, weights=right, minlength=num_positions)
    evaluation = evaluation_from_counts(
        exit_counts, correct_counts.astype(np.int64), position_macs(info, pairs), info.ori_macs,
        int(np.count_nonzero(records.correct[-1])), calibration=calibration,
    )
    if not per_sample:
        return evaluation
    return _with_samples(evaluation, exit_position.astype(np.int16),
                         records.top1_preds[sample_rows, sample_index])


def _with_samples(evaluation: Evaluation, exit_position: np.ndarray,
                  prediction: np.ndarray) -> Evaluation:
    fields = {name: getattr(evaluation, name) for name in evaluation.__dataclass_fields__}
    fields.update(exit_position=exit_position, prediction=prediction)
    return Evaluation(**fields)


# --------------------------------------------------------------------------- evaluators


def evaluate_config(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    config: Sequence[Sequence[float]],
    *,
    calibration: bool = False,
    per_sample: bool = False,
) -> Evaluation:
    """Exact figures of ``config`` (``P-1`` pairs ``[exit_type, threshold]``) on ``records``.

    Vectorised over samples: one pass per enabled position. With ``calibration`` the accuracy is
    the calibrated accuracy (:func:`calibrated_accuracy`); with ``per_sample`` the result carries
    every sample's exit position and prediction.
    """
    info = check_inputs(records, macs)
    pairs = check_config(config, records.num_positions, records.num_exit_types)
    positions = exit_positions(records, pairs)
    num_positions = records.num_positions
    rows = exit_rows(records, pairs)
    correct = records.correct
    exit_counts = np.bincount(positions, minlength=num_positions)
    correct_counts = np.zeros(num_positions, dtype=np.int64)
    for position in np.flatnonzero(exit_counts):
        correct_counts[position] = np.count_nonzero(correct[rows[position]][positions == position])
    evaluation = evaluation_from_counts(
        exit_counts, correct_counts, position_macs(info, pairs), info.ori_macs,
        int(np.count_nonzero(correct[-1])), calibration=calibration,
    )
    if not per_sample:
        return evaluation
    prediction = records.top1_preds[rows[positions], np.arange(records.num_samples)]
    return _with_samples(evaluation, positions, prediction)


def brute_force_evaluate(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    config: Sequence[Sequence[float]],
    *,
    calibration: bool = False,
    per_sample: bool = False,
) -> Evaluation:
    """The same figures as :func:`evaluate_config`, by a deliberately plain per-sample loop.

    Slow (pure Python, ``O(N·P)``); meant as an independent check of the vectorised evaluator.
    """
    from scipy.special import betaincinv

    info = check_inputs(records, macs)
    pairs = check_config(config, records.num_positions, records.num_exit_types)
    num_samples, last = records.num_samples, records.num_positions - 1
    exit_counts = [0] * records.num_positions
    correct_counts = [0] * records.num_positions
    total_macs = Fraction(0)
    sample_positions, sample_predictions = [], []
    final_correct = 0
    for sample in range(num_samples):
        label = int(records.labels[sample])
        final_pred = int(records.preds[records.num_exits - 1, sample, 0])
        final_correct += final_pred == label
        passed = 0.0  # MACs of the enabled heads this sample went through
        left_at, prediction, cost = last, final_pred, None
        for position, (exit_type, threshold) in enumerate(pairs):
            if exit_type < 0:
                continue
            row = position * records.num_exit_types + exit_type
            passed = passed + float(info.head_macs[exit_type][position])
            if float(records.confs[row, sample, 0]) > threshold:
                left_at, prediction = position, int(records.preds[row, sample, 0])
                cost = float(info.backbone_macs[position]) + passed
                break
        if cost is None:
            cost = float(info.ori_macs) + passed
        exit_counts[left_at] += 1
        correct_counts[left_at] += prediction == label
        total_macs += Fraction(cost)
        sample_positions.append(left_at)
        sample_predictions.append(prediction)
    correct = sum(correct_counts)
    if calibration:
        raw_acc = 0.0
        for count, right in zip(exit_counts, correct_counts, strict=True):
            if count > 0:
                bound = float(betaincinv(1 + right, 1 + count - right, CALIBRATION_QUANTILE))
                raw_acc = raw_acc + bound * (count / num_samples)
        relative_acc = raw_acc / (final_correct / num_samples) if final_correct else math.nan
    else:
        raw_acc = correct / num_samples
        relative_acc = correct / final_correct if final_correct else math.nan
    return Evaluation(
        relative_macs=float(total_macs / (num_samples * Fraction(float(info.ori_macs)))),
        raw_macs=float(total_macs / num_samples),
        relative_acc=relative_acc,
        raw_acc=raw_acc,
        exit_ratio=tuple(count / num_samples for count in exit_counts),
        num_samples=num_samples,
        calibrated=calibration,
        exit_position=np.asarray(sample_positions, dtype=np.int16) if per_sample else None,
        prediction=(np.asarray(sample_predictions, dtype=records.preds.dtype)
                    if per_sample else None),
    )
