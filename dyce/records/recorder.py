"""Seed API: ``OutputRecorder`` collects exit predictions batch by batch and saves records.

Usage as in the original DyCE README::

    recorder = OutputRecorder(topk=1)
    for images, targets in data_loader:
        model_out, ee_out = model(images)           # (B, C) and (B, N, C) or (N, B, C)
        recorder.add_pred(model_out, ee_out)
        recorder.add_label(targets.unsqueeze(-1))  # (B, 1) or (B,)
    recorder.save("val.parquet")

torch is never imported here: tensors are recognised by duck typing and processed with their
own methods; numpy arrays are processed with numpy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dyce.errors import DyceError
from dyce.records.format import UNTYPED_KEY, ExitRecords, pred_dtype, write_records

LAYOUTS = ("auto", "BNC", "NBC")


def _is_torch(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch"


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise DyceError(f"is {layout!r}; must be one of {', '.join(LAYOUTS)}", field="layout")
    return layout


def softmax_topk_numpy(logits: np.ndarray, topk: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k classes and softmax probabilities of ``logits`` ``(..., C)``.

    Returns ``(preds int64 (..., topk), confs float32 (..., topk))``, best first.
    """
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=-1, keepdims=True)
    candidates = np.argpartition(-probs, topk - 1, axis=-1)[..., :topk]
    candidate_probs = np.take_along_axis(probs, candidates, axis=-1)
    order = np.argsort(-candidate_probs, axis=-1, kind="stable")
    preds = np.take_along_axis(candidates, order, axis=-1)
    return preds.astype(np.int64), np.take_along_axis(candidate_probs, order, axis=-1)


def _softmax_topk_torch(logits: Any, topk: int) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`softmax_topk_numpy`, computed by torch on the tensor's device."""
    probs = logits.detach().float().softmax(dim=-1)
    confs, preds = probs.topk(topk, dim=-1)
    return preds.cpu().numpy(), confs.cpu().numpy()


class OutputRecorder:
    """Collect the top-k predictions of the final head and every early exit, then save them.

    Args:
        topk: predictions kept per exit.
        layout: layout of the early-exit logits: ``"BNC"`` (what the original model returns),
            ``"NBC"`` (what the original README says), or ``"auto"`` to infer it from the batch
            size of ``model_out`` (ambiguous, and refused, when ``N == B``).
    """

    def __init__(self, topk: int = 1, layout: str = "auto") -> None:
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise DyceError(f"is {topk!r}; must be an integer >= 1", field="topk")
        self.topk = topk
        self.layout = _check_layout(layout)
        self._preds: list[np.ndarray] = []
        self._confs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._num_classes: int | None = None
        self._num_exits: int | None = None
        self._auto_layout: str | None = None  # the layout "auto" resolved to on a batch

    def add_pred(self, model_out: Any, ee_out: Any = None, layout: str | None = None) -> None:
        """Record one batch of logits.

        Args:
            model_out: ``(B, C)`` logits of the original head (torch tensor or numpy array).
            ee_out: early-exit logits ``(B, N, C)`` or ``(N, B, C)`` (position-major exits),
                a list of ``N`` ``(B, C)`` arrays, or ``None`` (final head only).
            layout: overrides the recorder's ``layout`` for this call.
        """
        layout = _check_layout(self.layout if layout is None else layout)
        if layout == "auto" and self._auto_layout is not None:
            layout = self._auto_layout  # fixed by an earlier batch (a last partial batch of
            # B == N samples would otherwise be ambiguous)
        torch_input = _is_torch(model_out)
        if len(model_out.shape) != 2:
            raise DyceError(f"must be logits (B, C), got shape {tuple(model_out.shape)}",
                            field="model_out")
        batch, num_classes = (int(size) for size in model_out.shape)
        if self.topk > num_classes:
            raise DyceError(f"topk {self.topk} exceeds the {num_classes} classes", field="topk")
        if self._num_classes not in (None, num_classes):
            raise DyceError(f"{num_classes} classes, earlier batches had {self._num_classes}",
                            field="model_out")
        if ee_out is None:
            logits = model_out[None]
        else:
            if isinstance(ee_out, (list, tuple)):
                if torch_input:
                    import torch

                    ee_out = torch.stack(list(ee_out))
                else:
                    ee_out = np.stack(ee_out)
                layout = "NBC"
            ee_out, resolved = self._to_nbc(ee_out, batch, num_classes, layout)
            if torch_input:
                import torch

                logits = torch.cat([ee_out, model_out[None].to(ee_out.dtype)], dim=0)
            else:
                logits = np.concatenate([np.asarray(ee_out), np.asarray(model_out)[None]], axis=0)
        if self._num_exits not in (None, logits.shape[0]):
            raise DyceError(f"{logits.shape[0] - 1} early exits, earlier batches had "
                            f"{self._num_exits - 1}", field="ee_out")
        if torch_input:
            preds, confs = _softmax_topk_torch(logits, self.topk)
        else:
            preds, confs = softmax_topk_numpy(logits, self.topk)
        self._num_classes, self._num_exits = num_classes, int(logits.shape[0])
        if ee_out is not None and layout == "auto":
            self._auto_layout = resolved
        self._preds.append(preds.astype(pred_dtype(num_classes)))
        self._confs.append(confs.astype(np.float32, copy=False))

    @staticmethod
    def _to_nbc(ee_out: Any, batch: int, num_classes: int, layout: str) -> tuple[Any, str]:
        """Early-exit logits as ``(N, B, C)``, and the layout they had (``"auto"`` resolved)."""
        shape = tuple(int(size) for size in ee_out.shape)
        if len(shape) != 3 or shape[2] != num_classes:
            raise DyceError(f"must be (B, N, {num_classes}) or (N, B, {num_classes}) logits, got "
                            f"{shape}", field="ee_out")
        if layout == "auto":
            if shape[0] == batch and shape[1] == batch:
                raise DyceError(
                    f"shape {shape} is ambiguous: the number of exits equals the batch size "
                    f"{batch}; pass layout=\"BNC\" (what the original model returns) or "
                    f"layout=\"NBC\"", field="ee_out",
                )
            if shape[0] == batch:
                layout = "BNC"
            elif shape[1] == batch:
                layout = "NBC"
            else:
                raise DyceError(f"shape {shape} has no axis of the batch size {batch}",
                                field="ee_out")
        expected_axis = 0 if layout == "BNC" else 1
        if shape[expected_axis] != batch:
            raise DyceError(f"shape {shape} is not {layout} for batch size {batch}", field="ee_out")
        if layout == "BNC":
            return (ee_out.transpose(0, 1) if _is_torch(ee_out) else np.swapaxes(ee_out, 0, 1),
                    layout)
        return ee_out, layout

    def add_label(self, targets: Any) -> None:
        """Record one batch of ground-truth classes, ``(B,)`` or ``(B, 1)`` integers."""
        if _is_torch(targets):
            targets = targets.detach().cpu().numpy()
        labels = np.asarray(targets)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DyceError(f"must be integer classes (B,) or (B, 1), got {labels.dtype} "
                            f"{labels.shape}", field="targets")
        self._labels.append(labels.astype(np.int64))

    def to_records(
        self,
        *,
        exit_types: Sequence[str] | None = None,
        num_classes: int | None = None,
        model: str = "",
        dataset: str = "",
        split: str = "",
        meta_info: dict | None = None,
    ) -> ExitRecords:
        """Everything recorded so far as :class:`ExitRecords` (see :meth:`save`)."""
        if not self._preds or not self._labels:
            raise DyceError("nothing recorded: call add_pred and add_label for every batch",
                            field="records")
        labels = np.concatenate(self._labels)
        preds = np.concatenate(self._preds, axis=1)
        if labels.shape[0] != preds.shape[1]:
            raise DyceError(f"{labels.shape[0]} labels were added for {preds.shape[1]} "
                            f"predicted samples", field="label")
        extra = {} if meta_info is None else {"meta_info": meta_info}
        if exit_types is None:
            # Like the original recorder: the exit types are not known here; a reader that is
            # given the macs_info regroups the exits by its head types (load_any_records).
            extra[UNTYPED_KEY] = True
        exit_types = tuple(exit_types) if exit_types is not None else ("exit",)
        num_early = preds.shape[0] - 1
        if num_early % len(exit_types):
            raise DyceError(f"{num_early} early exits cannot be split into "
                            f"{len(exit_types)} exit types {list(exit_types)}", field="exit_types")
        return ExitRecords(
            labels=labels, preds=preds, confs=np.concatenate(self._confs, axis=1),
            exit_types=exit_types, num_positions=num_early // len(exit_types) + 1,
            num_classes=self._num_classes if num_classes is None else num_classes,
            model=model, dataset=dataset, split=split,
            extra=extra,
        )

    def save(
        self,
        path: str | os.PathLike,
        meta_info: dict | None = None,
        *,
        exit_types: Sequence[str] | None = None,
        num_classes: int | None = None,
        model: str = "",
        dataset: str = "",
        split: str = "",
    ) -> ExitRecords:
        """Write the records to ``path`` as dyce **Parquet** records (whatever the suffix).

        Args:
            path: output file, written atomically.
            meta_info: JSON-serialisable dictionary, stored as ``extra.meta_info``.
            exit_types: names of the ``T`` exit types, exits being position-major; default one
                type ``["exit"]``, so every early exit is its own position (``P = N + 1``),
                and the file is marked untyped: :func:`dyce.records.npz.load_any_records` given a
                macs_info regroups its exits by the macs_info's head types, as the original
                ``load_records`` did (so the seed README's two steps work unchanged).
            num_classes: default: the width ``C`` of the logits.
            model, dataset, split: provenance stored in the file metadata.

        Returns:
            The saved :class:`ExitRecords`.
        """
        if meta_info is not None:
            try:
                json.dumps(meta_info)
            except (TypeError, ValueError) as error:
                raise DyceError(f"must be JSON-serialisable ({error})", path=path,
                                field="meta_info") from None
        records = self.to_records(exit_types=exit_types, num_classes=num_classes, model=model,
                                  dataset=dataset, split=split, meta_info=meta_info)
        write_records(path, records)
        return records
