"""Realistic synthetic exit records and MACs tables for tests and benchmarks.

Everything is vectorised over samples (one loop over exits), so a 1.28M-sample record with
8 positions x 5 exit types and 1000 classes is generated in seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtri

from dyce.records.format import ExitRecords, pred_dtype

DEFAULT_EXIT_TYPES = ("mlp1x1000", "mlp3x500", "mlp3x1000", "mlp5x500", "mlp5x1000")


def exit_type_names(num_exit_types: int) -> tuple[str, ...]:
    """The original default exit-type names when ``num_exit_types <= 5``, else ``exit0 …``."""
    if num_exit_types <= len(DEFAULT_EXIT_TYPES):
        return DEFAULT_EXIT_TYPES[:num_exit_types]
    return tuple(f"exit{k}" for k in range(num_exit_types))


def exit_accuracies(
    num_positions: int, num_exit_types: int, final_accuracy: float = 0.8
) -> np.ndarray:
    """float64 ``(E,)``: target top-1 accuracy of every exit, position-major, final head last.

    Later positions and bigger (higher-index) exit types are more accurate; every early exit
    is below the final head.
    """
    depth = np.arange(1, num_positions, dtype=np.float64) / num_positions  # (P-1,) in (0, 1)
    size = np.arange(num_exit_types, dtype=np.float64) / max(num_exit_types - 1, 1)  # (T,)
    relative = (0.3 + 0.62 * depth[:, None] ** 0.8) * (0.92 + 0.08 * size[None, :])
    return np.append(final_accuracy * relative.ravel(), final_accuracy)


def make_synthetic_records(
    num_samples: int,
    num_positions: int,
    num_exit_types: int,
    num_classes: int,
    topk: int = 1,
    seed: int = 0,
    **metadata: Any,
) -> ExitRecords:
    """Random but realistic :class:`ExitRecords`.

    Correctness is drawn from a Gaussian copula: each sample has one latent difficulty shared by
    all exits (rank correlation ~0.8), so a sample easy for an early exit is usually easy for
    later ones. The top-1 confidence grows with the margin between the exit's skill and the
    sample's difficulty, so it is correlated with correctness. Confidences are float32 in
    ``(1/C, 1)``, top-k classes are distinct and sorted by decreasing confidence.

    Args:
        num_samples: ``N``.
        num_positions: ``P`` (candidate positions plus the final head), at least 1.
        num_exit_types: ``T``, at least 1.
        num_classes: ``C``, at least ``max(2, topk)``.
        topk: predictions kept per exit.
        seed: seed of the random generator (same seed, same records).
        metadata: passed to :class:`ExitRecords` (``model``, ``dataset``, ``split``, …).

    Returns:
        Records with ``labels`` int64 ``(N,)``, ``preds`` int16/int32 ``(E, N, topk)`` and
        ``confs`` float32 ``(E, N, topk)``, ``E = (P-1)*T + 1``.
    """
    if num_positions < 1 or num_exit_types < 1 or num_samples < 0:
        raise ValueError("need num_positions >= 1, num_exit_types >= 1, num_samples >= 0")
    if num_classes < max(2, topk):
        raise ValueError("need num_classes >= max(2, topk)")
    rng = np.random.default_rng(seed)
    accuracies = exit_accuracies(num_positions, num_exit_types)
    num_exits = accuracies.shape[0]
    rho = np.float32(0.9)
    labels = rng.integers(0, num_classes, num_samples, dtype=np.int64)
    difficulty = rng.standard_normal(num_samples, dtype=np.float32)
    preds = np.empty((num_exits, num_samples, topk), dtype=pred_dtype(num_classes))
    confs = np.empty((num_exits, num_samples, topk), dtype=np.float32)
    floor = np.float32(1.0 / num_classes)
    for exit_index in range(num_exits):
        skill = np.float32(ndtri(accuracies[exit_index]))
        own_noise = rng.standard_normal(num_samples, dtype=np.float32)
        score = rho * difficulty + np.sqrt(1 - rho**2) * own_noise
        margin = skill - score  # > 0 exactly when the exit is right
        correct = margin > 0
        wrong_class = (labels + rng.integers(1, num_classes, num_samples)) % num_classes
        top1 = np.where(correct, labels, wrong_class)
        noise = rng.standard_normal(num_samples, dtype=np.float32)
        logit = 1.6 * margin + 0.6 * skill + 0.5 * noise
        top1_conf = floor + (1 - floor) / (1 + np.exp(-logit))
        confs[exit_index, :, 0] = np.minimum(top1_conf, np.float32(0.9999))
        preds[exit_index, :, 0] = top1
        if topk > 1:
            _fill_runner_ups(rng, preds[exit_index], confs[exit_index], num_classes)
    return ExitRecords(
        labels=labels,
        preds=preds,
        confs=confs,
        exit_types=exit_type_names(num_exit_types),
        num_positions=num_positions,
        num_classes=num_classes,
        **metadata,
    )


def _fill_runner_ups(
    rng: np.random.Generator, preds: np.ndarray, confs: np.ndarray, num_classes: int
) -> None:
    """Fill ranks ``1 … topk-1`` of ``preds``/``confs`` ``(N, topk)`` in place from rank 0.

    Classes are rank-0 class plus distinct offsets in ``[1, C)`` (so all distinct); each
    confidence is a share of the remaining probability mass, capped by the previous rank.
    """
    num_samples, topk = preds.shape
    draws = np.sort(rng.integers(0, num_classes - topk + 1, (num_samples, topk - 1)), axis=1)
    offsets = draws + np.arange(1, topk)  # strictly increasing, in [1, C-1]
    order = rng.permuted(offsets, axis=1)  # runner-up classes in random order
    preds[:, 1:] = (preds[:, :1].astype(np.int64) + order) % num_classes
    remaining = 1 - confs[:, 0]
    for rank in range(1, topk):
        share = rng.uniform(0.3, 0.8, num_samples).astype(np.float32) * remaining
        confs[:, rank] = np.maximum(np.minimum(share, confs[:, rank - 1]), np.float32(1e-7))
        remaining = remaining - confs[:, rank]


def make_synthetic_macs(num_positions: int, num_exit_types: int) -> dict:
    """A ``macs_info`` dictionary in the seed JSON format for ``P`` positions and ``T`` types.

    ``backbone.macs`` is non-decreasing with the last entry equal to ``ori_macs`` (4.1 GMACs,
    ResNet-50-like); ``head[k].macs[p]`` grows with the exit type and the position and is 0 at
    the last position. Exit-type names match :func:`make_synthetic_records`.
    """
    ori_macs = 4_100_000_000
    depth = np.arange(1, num_positions + 1) / num_positions
    backbone = [int(v) for v in np.round(ori_macs * depth**1.1)]
    backbone[-1] = ori_macs
    heads = []
    for k, name in enumerate(exit_type_names(num_exit_types)):
        macs = [int(ori_macs * 0.0005 * (k + 1) * (1 + p)) for p in range(num_positions - 1)] + [0]
        heads.append({"name": name, "macs": macs, "params": []})
    return {
        "head": heads,
        "backbone": {"name": "synthetic", "macs": backbone, "ori_macs": ori_macs},
    }
