"""Exit records: what every exit and the final head predicted for every sample of one split.

In memory a record is an :class:`ExitRecords`; on disk it is Parquet (see ``docs/records.md``).
Exit order is position-major, exactly as in the original DyCE ``.npz`` records: exit index
``e = position * num_exit_types + exit_type`` for candidate positions ``0 … P-2``, and the final
head last (``e = E - 1``), so ``E = (P - 1) * T + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from dyce.errors import DyceError


@dataclass(frozen=True, eq=False)
class ExitRecords:
    """Predictions of every exit for one split.

    Attributes:
        labels: int array ``(N,)``, ground-truth class of each sample.
        preds: int array ``(E, N, topk)``, top-k predicted classes per exit, best first.
        confs: float32 array ``(E, N, topk)``, softmax probabilities of those classes.
        exit_types: names of the ``T`` exit types (e.g. ``"mlp1x1000"``).
        num_positions: ``P``, candidate positions plus the final head.
        num_classes: number of classes ``C`` (labels and predictions lie in ``[0, C)``).
        sample_ids: int64 array ``(N,)``, index of each sample in its dataset.
        position_names: ``P`` names (tap node names, last ``"final"``).
        model, dataset, split: where the record came from.
        source: file the record was read from (for error messages), or ``None``.
    """

    labels: np.ndarray
    preds: np.ndarray
    confs: np.ndarray
    exit_types: tuple[str, ...]
    num_positions: int
    num_classes: int
    sample_ids: np.ndarray | None = None
    position_names: tuple[str, ...] | None = None
    model: str = ""
    dataset: str = ""
    split: str = ""
    source: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source
        if self.preds.ndim != 3 or self.confs.shape != self.preds.shape:
            raise DyceError(
                f"preds {self.preds.shape} and confs {self.confs.shape} must both be (E, N, topk)",
                path=where, field="preds",
            )
        expected = (self.num_positions - 1) * len(self.exit_types) + 1
        if self.preds.shape[0] != expected:
            raise DyceError(
                f"{self.preds.shape[0]} exits recorded, but {self.num_positions} positions x "
                f"{len(self.exit_types)} exit types need {expected}",
                path=where, field="exits",
            )
        if self.labels.shape != (self.preds.shape[1],):
            raise DyceError(
                f"labels {self.labels.shape} do not match {self.preds.shape[1]} samples",
                path=where, field="label",
            )
        if self.sample_ids is None:
            object.__setattr__(self, "sample_ids", np.arange(self.num_samples, dtype=np.int64))
        if self.position_names is None:
            names = tuple(f"p{p}" for p in range(self.num_positions - 1)) + ("final",)
            object.__setattr__(self, "position_names", names)

    @property
    def num_samples(self) -> int:
        """``N``."""
        return int(self.preds.shape[1])

    @property
    def num_exit_types(self) -> int:
        """``T``."""
        return len(self.exit_types)

    @property
    def num_exits(self) -> int:
        """``E = (P - 1) * T + 1`` (the final head included)."""
        return int(self.preds.shape[0])

    @property
    def topk(self) -> int:
        return int(self.preds.shape[2])

    def exit_index(self, position: int, exit_type: int) -> int:
        """Row of exit ``(position, exit_type)`` in ``preds``/``confs``; the final head for ``P-1``."""
        if position == self.num_positions - 1:
            return self.num_exits - 1
        return position * self.num_exit_types + exit_type

    @cached_property
    def top1_confs(self) -> np.ndarray:
        """float32 ``(E, N)``: top-1 confidence of every exit."""
        return np.ascontiguousarray(self.confs[:, :, 0])

    @cached_property
    def top1_preds(self) -> np.ndarray:
        """int ``(E, N)``: top-1 class of every exit."""
        return np.ascontiguousarray(self.preds[:, :, 0])

    @cached_property
    def correct(self) -> np.ndarray:
        """bool ``(E, N)``: whether each exit's top-1 class equals the label."""
        return self.top1_preds == self.labels[None, :]

    @property
    def final_accuracy(self) -> float:
        """Top-1 accuracy of the final head alone (the original model)."""
        return float(self.correct[-1].mean()) if self.num_samples else float("nan")
