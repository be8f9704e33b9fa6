"""Real early-exit inference from a bundle, with live switching of the exit configuration.

A *bundle* (``dyce bundle``) is one ``torch.save`` file of plain tensors, strings, numbers, lists
and dictionaries (read back with ``weights_only=True``): the network spec, the backbone's state,
only the exit heads some front configuration uses, the ``macs_info`` table and the front (per
configuration: config, method, λ / sweep parameter, validation relative MACs and accuracy).

:class:`EarlyExitRuntime` runs the backbone stage by stage (:mod:`dyce.network.stages`): at each enabled
position the samples still in flight run that exit head, those whose top-1 softmax confidence is
strictly greater than the threshold leave, and the backbone continues on the others only. MACs
follow DyCE: leaving at ``p`` costs ``backbone.macs[p]`` plus every enabled head at positions
``<= p``; reaching the end costs ``ori_macs`` plus every enabled head. With no exit enabled the
plain backbone runs (no per-stage bookkeeping). ``set_budget``/``set_lambda``/``set_config``/
``set_risk`` swap the active configuration in one assignment, effective from the next call.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dyce.errors import DyceError
from dyce.io import atomic_path, plain_value
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.network.exit_heads import ExitHead, parse_exit_type
from dyce.network.stages import split_stages
from dyce.records.format import ExitRecords

if TYPE_CHECKING:
    from dyce.runtime.selection import Selection

BUNDLE_FORMAT = "dyce-bundle"
BUNDLE_VERSION = 1
FRONT_COLUMNS = ("config", "relative_macs", "relative_acc")


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class FrontEntry:
    """One selectable configuration.

    Attributes:
        config: ``P-1`` pairs ``(exit_type, threshold)``; ``exit_type = -1`` means no exit.
        method: search method (``"onepass"``, …), ``"original"`` for the plain model, ``"custom"``
            for a configuration given by hand.
        lambda_value: the trade-off weight λ it was searched with (``None`` for peer strategies).
        parameter_name, parameter: the sweep parameter (``"lambda"``, ``"threshold"``, ``"q"``).
        relative_macs, relative_acc: validation figures (NaN for a custom configuration).
        index: its row in the bundle's front (``None`` for the original model or a custom one).
        patience: for a patience (PABEE) setting, ``t``: a sample leaves once ``t`` consecutive
            exits repeated the previous exit's class; ``config`` then holds its exit type at
            every position (threshold 1, unused), which is also how its MACs are counted.
        search_loss: its loss on the search split (final head right, configuration wrong, as a
            fraction of the final head's right answers; see :mod:`dyce.runtime.selection`), when the
            bundle was built with the search records; orders the tests of :meth:`set_risk`.
    """

    config: tuple[tuple[int, float], ...]
    method: str
    lambda_value: float | None = None
    parameter_name: str | None = None
    parameter: float | None = None
    relative_macs: float = math.nan
    relative_acc: float = math.nan
    index: int | None = None
    patience: int | None = None
    search_loss: float | None = None

    def as_config(self) -> list[list[float]] | dict[str, int]:
        """The configuration as stored in result tables (and understood by the evaluators)."""
        if self.patience is not None:
            return {"patience": int(self.patience), "exit_type": int(self.config[0][0])}
        return [[int(k), float(t)] for k, t in self.config]

    def to_plain(self) -> dict[str, Any]:
        """A dictionary of plain values (for the bundle file)."""
        plain = asdict(self)
        plain["config"] = [[int(k), float(t)] for k, t in self.config]
        return plain

    @property
    def enabled_positions(self) -> list[int]:
        return [p for p, (k, _) in enumerate(self.config) if k >= 0]


def original_entry(num_positions: int) -> FrontEntry:
    """The plain model: no exit anywhere, relative MACs and accuracy 1."""
    return FrontEntry(((-1, 1.0),) * (num_positions - 1), "original", None, None, None, 1.0, 1.0)


def resolve_config(
    config: Any, num_positions: int, num_exit_types: int, *, where: str | None = None,
    field_name: str = "config",
) -> tuple[tuple[tuple[int, float], ...], int | None]:
    """Validate a configuration and return ``(pairs, patience)``.

    ``config``: ``P-1`` pairs ``[exit_type, threshold]`` (``patience`` None), a patience setting
    ``{"patience": t, "exit_type": k}`` (pairs ``(k, 1.0)`` at every position), or JSON text of
    either.
    """
    from dyce.evaluate.exact import check_config as check_pairs  # torch-free; one validator for all

    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            raise DyceError(f"not JSON: {config!r:.80}", path=where, field=field_name) from None
    if isinstance(config, dict):
        patience, exit_type = config.get("patience"), config.get("exit_type")
        valid = (
            set(config) == {"patience", "exit_type"}
            and all(isinstance(v, int) and not isinstance(v, bool) for v in (patience, exit_type))
            and patience >= 1 and 0 <= exit_type < num_exit_types
        )
        if not valid:
            raise DyceError(
                f"{config!r:.80} is not a patience setting {{'patience': t >= 1, 'exit_type': "
                f"k in 0..{num_exit_types - 1}}}", path=where, field=field_name,
            )
        return ((exit_type, 1.0),) * (num_positions - 1), patience
    pairs = check_pairs(config, num_positions, num_exit_types, field=field_name, path=where)
    return tuple(pairs), None


def read_front(paths: Sequence[str | os.PathLike], num_positions: int,
               num_exit_types: int, *, searched_only: bool = False) -> list[FrontEntry]:
    """Front rows of one or more result tables (``dyce front``/``dyce evaluate`` Parquet).

    Needs the columns ``config``, ``relative_macs`` and ``relative_acc`` (validation figures);
    ``method``, ``lambda``, ``parameter_name`` and ``parameter`` are kept when present.
    Also reads evaluated tables of every searched configuration (``dyce evaluate``), which a
    bundle keeps so that a λ runs the configuration searched for it; ``searched_only`` then
    keeps the rows whose ``candidate`` is ``"searched"`` (or that have none), not the
    neighbours of :mod:`dyce.search.candidates`.
    """
    from dyce.report.tables import read_table

    entries: list[FrontEntry] = []
    for path in paths:
        df, _ = read_table(path)
        missing = [c for c in FRONT_COLUMNS if c not in df.columns]
        if missing:
            raise DyceError(
                f"missing column(s) {', '.join(missing)}; give a front or evaluated table",
                path=path, field=missing[0],
            )
        rows = df.to_dicts()
        for row_index, row in enumerate(rows):
            if searched_only and row.get("candidate") not in (None, "searched"):
                continue
            field_name = f"config (row {row_index})"
            config, patience = resolve_config(row["config"], num_positions, num_exit_types,
                                            where=str(path), field_name=field_name)
            for column in ("relative_macs", "relative_acc"):
                value = row[column]
                if value is None or not math.isfinite(float(value)):
                    raise DyceError(f"row {row_index} is {value!r}", path=path, field=column)
            entries.append(FrontEntry(
                config=config,
                method=str(row.get("method") or "unknown"),
                lambda_value=_optional_float(row.get("lambda")),
                parameter_name=row.get("parameter_name"),
                parameter=_optional_float(row.get("parameter")),
                relative_macs=float(row["relative_macs"]),
                relative_acc=float(row["relative_acc"]),
                index=len(entries),
                patience=patience,
            ))
    if not entries:
        raise DyceError("the front has no configuration", path=paths[0] if paths else None)
    return entries


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- bundle


def check_macs_matches(macs: MacsInfo, taps: Sequence[str], exit_types: Sequence[str],
                       where: str | None) -> None:
    """Raise unless ``macs`` has one position per tap plus the final one (with the same names,
    when the table lists them in ``backbone.positions``) and exactly these exit types."""
    num_positions = len(taps) + 1
    if macs.num_positions != num_positions:
        raise DyceError(
            f"has {macs.num_positions} positions, the network has {num_positions} "
            f"({num_positions - 1} taps + final)", path=where, field="backbone.macs",
        )
    names = macs.raw.get("backbone", {}).get("positions")
    if names is not None and list(names)[:-1] != list(taps):
        raise DyceError(f"positions {list(names)} are not the network's taps {list(taps)} + final",
                        path=where, field="backbone.positions")
    if list(macs.head_names) != list(exit_types):
        raise DyceError(
            f"exit types {list(macs.head_names)} differ from the network's {list(exit_types)}",
            path=where, field="head",
        )


def check_tables_match_network(paths: Sequence[str | os.PathLike], spec: Mapping[str, Any],
                               where: str | None = None) -> None:
    """Raise unless every result table at ``paths`` was searched on this network's records.

    Compared with the network's spec (``where`` names its file): the records' model (table
    metadata ``records_model``), the class count and the tap names (``position_names``), where
    the table records them; and all tables must name the same ``model`` in their column.
    """
    import polars as pl

    from dyce.report.tables import METADATA_KEY

    taps = [str(t) for t in spec["taps"]]
    models: dict[str, str] = {}
    for path in paths:
        raw = pl.read_parquet_metadata(path)
        metadata = json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}
        checks = (
            ("records_model", metadata.get("records_model") or None, spec.get("model")),
            ("num_classes", metadata.get("num_classes"), spec.get("num_classes")),
            ("position_names", None if metadata.get("position_names") is None
             else list(metadata["position_names"])[:-1], taps),
        )
        for field_name, theirs, ours in checks:
            if theirs is not None and ours is not None and theirs != ours:
                raise DyceError(
                    f"searched on records of another network: {field_name} {theirs} in the "
                    f"table, {ours} in {where or 'the exits checkpoint'}",
                    path=path, field=field_name,
                )
        if "model" in pl.read_parquet_schema(path):
            for name in pl.read_parquet(path, columns=["model"])["model"].unique().to_list():
                if name:
                    models.setdefault(str(name), str(path))
    if len(models) > 1:
        listed = "; ".join(f"{name} ({path})" for name, path in models.items())
        raise DyceError(f"the tables come from different models: {listed}", field="model")


def build_bundle(
    exits_checkpoint: str | os.PathLike,
    front_table: str | os.PathLike | Sequence[str | os.PathLike],
    macs_info: str | os.PathLike | dict | MacsInfo,
    out_path: str | os.PathLike,
    searched_tables: Sequence[str | os.PathLike] = (),
    *,
    calibration_records: str | os.PathLike | None = None,
    search_records: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the runtime bundle to ``out_path`` (atomically); returns a short summary dict.

    ``exits_checkpoint``: ``EXITS.pt`` of ``dyce train-exits``; ``front_table``: one or more
    front (or evaluated) Parquet tables; ``macs_info``: the MACs table of this network;
    ``searched_tables``: evaluated tables (``dyce evaluate``) of every searched configuration,
    kept so that :meth:`EarlyExitRuntime.set_lambda` runs the configuration searched for a λ,
    not the front row of the nearest λ. Tables searched on another network's records are
    refused (:func:`check_tables_match_network`).
    ``calibration_records`` (the ``calib`` split) are stored in the bundle (labels and every
    exit's top-1 class and confidence) as the default of :meth:`EarlyExitRuntime.set_risk`;
    ``search_records`` give each front configuration its search-split loss, the order of
    those tests (without them, the tests go from the most to the least expensive).
    """
    from dyce.network.models import load_exits_checkpoint

    net = load_exits_checkpoint(exits_checkpoint, "cpu")
    spec = plain_value(net.spec)
    exit_types = [str(name) for name in spec["exit_types"]]
    num_positions = len(spec["taps"]) + 1
    macs_where = None if isinstance(macs_info, (dict, MacsInfo)) else str(macs_info)
    macs = load_macs_info(macs_info)
    check_macs_matches(macs, spec["taps"], exit_types, macs_where)
    paths = [front_table] if isinstance(front_table, (str, os.PathLike)) else list(front_table)
    searched_paths = list(searched_tables)
    check_tables_match_network([*paths, *searched_paths], spec, str(exits_checkpoint))
    front = read_front(paths, num_positions, len(exit_types))
    searched = (read_front(searched_paths, num_positions, len(exit_types), searched_only=True)
                if searched_paths else [])
    calibration = None
    if calibration_records is not None:
        calibration = _calibration_payload(_read_matching(calibration_records, macs, spec))
    if search_records is not None:
        from dataclasses import replace

        from dyce.runtime.selection import configuration_losses

        search = _read_matching(search_records, macs, spec)
        losses = configuration_losses(search, macs, [e.as_config() for e in front])
        front = [replace(e, search_loss=float(loss)) for e, loss in zip(front, losses, strict=True)]
    used = sorted({(p, k) for entry in [*front, *searched]
                   for p, (k, _) in enumerate(entry.config) if k >= 0})
    dataset = spec.get("dataset") or _front_dataset(paths)
    heads = []
    for position, exit_type in used:
        head = net.exit_heads[position][exit_type]
        heads.append({
            "position": position,
            "exit_type": exit_type,
            "name": exit_types[exit_type],
            "layout": head.pool.layout,
            "in_channels": int(head.mlp[0].in_features),
            "state": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
        })
    payload = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "spec": spec,
        "dataset": dataset,
        "backbone_state": {k: v.detach().cpu().clone() for k, v in net.backbone.state_dict().items()},
        "exit_heads": heads,
        "macs_info": macs.raw,
        "front": [entry.to_plain() for entry in front],
        "searched": [entry.to_plain() for entry in searched],
        "calibration": calibration,
    }
    with atomic_path(out_path) as tmp:
        torch.save(payload, tmp)
    return {"configurations": len(front), "searched": len(searched), "exit_heads": len(heads),
            "exit_heads_total": (num_positions - 1) * len(exit_types)}


def _read_matching(path: str | os.PathLike, macs: MacsInfo, spec: Mapping[str, Any]
                   ) -> ExitRecords:
    """Records at ``path`` (Parquet or .npz), checked against the network's exit table."""
    from dyce.records.npz import load_any_records

    records = load_any_records(path, macs)
    if list(records.exit_types) != [str(t) for t in spec["exit_types"]] or (
            records.num_classes != int(spec["num_classes"])):
        raise DyceError(f"exit types {list(records.exit_types)} / {records.num_classes} classes "
                        f"differ from the network's {list(spec['exit_types'])} / "
                        f"{spec['num_classes']}", path=str(path), field="exit_types")
    return records


def _calibration_payload(records: ExitRecords) -> dict[str, Any]:
    """What :meth:`EarlyExitRuntime.set_risk` needs of calibration records, as plain tensors."""
    return {
        "labels": torch.from_numpy(np.ascontiguousarray(records.labels, dtype=np.int64)),
        "preds": torch.from_numpy(records.top1_preds.astype(np.int64)),
        "confs": torch.from_numpy(records.top1_confs),
        "num_classes": int(records.num_classes), "split": records.split,
        "model": records.model, "dataset": records.dataset, "source": records.source,
    }


def _calibration_records(payload: Mapping[str, Any] | None, spec: Mapping[str, Any],
                         where: str | None) -> ExitRecords | None:
    """The calibration records stored by :func:`build_bundle` (``None`` when there are none)."""
    if not payload:
        return None
    from dyce.records.format import pred_dtype

    num_classes = int(payload["num_classes"])
    preds = payload["preds"].numpy().astype(pred_dtype(num_classes))[:, :, None]
    return ExitRecords(
        labels=payload["labels"].numpy(), preds=preds, confs=payload["confs"].numpy()[:, :, None],
        exit_types=tuple(str(t) for t in spec["exit_types"]),
        num_positions=len(spec["taps"]) + 1, num_classes=num_classes,
        model=str(payload.get("model") or ""), dataset=str(payload.get("dataset") or ""),
        split=str(payload.get("split") or ""), source=f"{where} (calibration records)",
    )


def _front_dataset(paths: Sequence[str | os.PathLike]) -> str | None:
    """The one dataset named in the fronts' ``dataset`` column (for preprocessing), else None."""
    import polars as pl

    names = set()
    for path in paths:
        schema = pl.read_parquet_schema(path)
        if "dataset" in schema:
            names.update(v for v in pl.read_parquet(path, columns=["dataset"])["dataset"] if v)
    return names.pop() if len(names) == 1 else None


def load_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a bundle (``weights_only=True``: no code runs on load)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DyceError("file not found", path=path) from None
    except Exception as error:  # torch raises several types for damaged or foreign files
        raise DyceError(f"cannot read bundle ({type(error).__name__}: {error})", path=path) from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise DyceError("not a dyce runtime bundle (dyce bundle)", path=path, field="format")
    if payload.get("version") != BUNDLE_VERSION:
        raise DyceError(f"unsupported version {payload.get('version')!r}", path=path,
                        field="version")
    for key in ("spec", "backbone_state", "exit_heads", "macs_info", "front"):
        if key not in payload:
            raise DyceError("missing", path=path, field=key)
    return payload


# --------------------------------------------------------------------------- runtime


class RuntimeOutput:
    """Result of one batch.

    Attributes:
        predictions: int64 ``(B,)`` predicted class (top-1 of the exit the sample left at).
        exit_position: int64 ``(B,)`` position it left at (``P-1`` = final head).
        macs: float64 ``(B,)`` MACs spent on it (DyCE accounting, from the MACs table).
        confidence: float32 ``(B,)`` top-1 softmax probability at that exit.

    ``exit_position`` and ``macs`` are built on first access when every sample reached the end
    (the no-exit path), so a caller who needs only the predictions pays nothing for them.
    """

    __slots__ = ("predictions", "confidence", "_exit_position", "_macs", "_leave_macs", "_final")

    def __init__(self, predictions: torch.Tensor, exit_position: torch.Tensor | None,
                 leave_macs: torch.Tensor, confidence: torch.Tensor, final_position: int = -1):
        self.predictions = predictions
        self.confidence = confidence
        self._exit_position = exit_position
        self._macs: torch.Tensor | None = None
        self._leave_macs = leave_macs  # float64 (P,): MACs of leaving at each position
        self._final = final_position  # used when exit_position is None: all reached the end

    @property
    def exit_position(self) -> torch.Tensor:
        if self._exit_position is None:
            self._exit_position = torch.full(self.predictions.shape, self._final,
                                             dtype=torch.int64)
        return self._exit_position

    @property
    def macs(self) -> torch.Tensor:
        if self._macs is None:
            self._macs = self._leave_macs[self.exit_position]
        return self._macs

    def __repr__(self) -> str:
        return f"RuntimeOutput(batch={self.predictions.shape[0]})"


@dataclass(frozen=True)
class _Plan:
    """Everything a call needs about the active configuration (swapped in one assignment)."""

    entry: FrontEntry
    exits: tuple[tuple[int, nn.Module, float], ...]  # (position, head, threshold), enabled only
    leave_macs: torch.Tensor = field(repr=False)  # float64 (P,): cost of leaving at each position
    patience: int | None = None  # patience rule instead of thresholds


def _softmax_top1(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 confidence and int64 class ``(B,)``, computed exactly as the recorder does."""
    confidence, prediction = torch.softmax(logits.float(), dim=-1).topk(1, dim=-1)
    return confidence.view(-1), prediction.view(-1)


class EarlyExitRuntime:
    """Early-exit inference with a switchable configuration (see the module docstring).

    Build with :meth:`load`. The active configuration starts as the original model (no exits);
    choose one with :meth:`set_budget`, :meth:`set_lambda`, :meth:`set_config` or
    :meth:`set_risk`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: Mapping[str, Any],
        heads: Mapping[tuple[int, int], nn.Module],
        macs: MacsInfo,
        front: Sequence[FrontEntry],
        device: torch.device,
        source: str | None = None,
        dataset: str | None = None,
        searched: Sequence[FrontEntry] = (),
        calibration: ExitRecords | None = None,
    ):
        self.spec = dict(spec)
        self.calibration = calibration
        self.dataset = dataset
        self.source = source
        self.device = device
        self.taps = [str(t) for t in spec["taps"]]
        self.exit_types = [str(t) for t in spec["exit_types"]]
        self.num_positions = len(self.taps) + 1
        self.in_channels = int(spec["in_channels"])
        size = spec["input_size"]
        self.input_size: tuple[int, int] = (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )
        check_macs_matches(macs, self.taps, self.exit_types, source)
        self.macs = macs
        self.backbone = backbone.eval().to(device)
        self.stages = split_stages(self.backbone, self.taps)
        self.heads = {key: head.eval().to(device) for key, head in heads.items()}
        self.front = list(front)
        self.searched = list(searched)  # every searched configuration (bundles with --searched)
        self._plan = self._make_plan(original_entry(self.num_positions))

    # ----------------------------------------------------------------------- loading

    @classmethod
    def load(cls, bundle_path: str | os.PathLike, device: str | torch.device = "auto"
             ) -> EarlyExitRuntime:
        """Load a bundle; ``device="auto"`` uses CUDA when present."""
        from dyce.network.models import build_backbone, load_backbone_state
        from dyce.network.training import resolve_device

        where = str(bundle_path)
        payload = load_bundle(bundle_path)
        spec = payload["spec"]
        for key in ("model", "taps", "exit_types", "num_classes", "in_channels", "input_size"):
            if key not in spec:
                raise DyceError("missing in the bundle's spec", path=where, field=f"spec.{key}")
        backbone = build_backbone(
            spec["model"], num_classes=int(spec["num_classes"]),
            in_channels=int(spec["in_channels"]), input_size=spec["input_size"],
        )
        load_backbone_state(backbone, payload["backbone_state"], source=where)
        num_classes = int(spec["num_classes"])
        heads: dict[tuple[int, int], nn.Module] = {}
        for item in payload["exit_heads"]:
            head = ExitHead(parse_exit_type(item["name"]), int(item["in_channels"]), num_classes,
                            item["layout"])
            try:
                head.load_state_dict(item["state"])
            except RuntimeError as error:
                raise DyceError(f"exit head {item['name']} at position {item['position']}: "
                                f"{error}", path=where, field="exit_heads") from None
            heads[(int(item["position"]), int(item["exit_type"]))] = head
        macs = load_macs_info(payload["macs_info"])
        front, searched = (
            [FrontEntry(config=tuple((int(k), float(t)) for k, t in row["config"]),
                        **{k: v for k, v in row.items() if k != "config"})
             for row in payload.get(key) or []]
            for key in ("front", "searched")
        )
        return cls(backbone, spec, heads, macs, front, resolve_device(device), source=where,
                   dataset=payload.get("dataset"), searched=searched,
                   calibration=_calibration_records(payload.get("calibration"), spec, where))

    # ----------------------------------------------------------------------- switching

    def _make_plan(self, entry: FrontEntry) -> _Plan:
        exits = []
        for position, (exit_type, threshold) in enumerate(entry.config):
            if exit_type < 0:
                continue
            head = self.heads.get((position, exit_type))
            if head is None:
                raise DyceError(
                    f"exit type {exit_type} ({self.exit_types[exit_type]}) at position {position} "
                    "is not in the bundle (it keeps only heads its front uses)",
                    path=self.source, field="config",
                )
            exits.append((position, head, float(threshold)))
        from dyce.evaluate.exact import position_macs

        costs = torch.from_numpy(position_macs(self.macs, entry.config))
        return _Plan(entry, tuple(exits), costs, entry.patience)

    def _activate(self, entry: FrontEntry) -> FrontEntry:
        self._plan = self._make_plan(entry)  # one assignment: a call in flight keeps its plan
        return entry

    @property
    def current(self) -> FrontEntry:
        """The active configuration (with its front index, method, λ and validation figures)."""
        return self._plan.entry

    def set_config(self, index_or_config: int | FrontEntry | Sequence[Sequence[float]] | dict
                   ) -> FrontEntry:
        """Activate front row ``index``, a :class:`FrontEntry`, or a configuration by hand
        (``[[exit_type, threshold], …]`` or ``{"patience": t, "exit_type": k}``)."""
        if isinstance(index_or_config, FrontEntry):
            return self._activate(index_or_config)
        if isinstance(index_or_config, (int, np.integer)) and not isinstance(index_or_config, bool):
            index = int(index_or_config)
            if not 0 <= index < len(self.front):
                raise DyceError(f"index {index} outside the front's 0..{len(self.front) - 1}",
                                path=self.source, field="config")
            return self._activate(self.front[index])
        config, patience = resolve_config(index_or_config, self.num_positions,
                                        len(self.exit_types), where=self.source)
        for entry in self.front:
            if entry.config == config and entry.patience == patience:
                return self._activate(entry)
        if patience is None and all(k < 0 for k, _ in config):
            return self._activate(original_entry(self.num_positions))
        return self._activate(FrontEntry(config, "custom", patience=patience))

    def set_budget(self, relative_macs: float) -> FrontEntry:
        """Most accurate configuration whose validation relative MACs is ``<= relative_macs``.

        A budget of 1 or more is the original model: it has full accuracy by definition and no
        exit overhead, whereas a configuration that is "as accurate" at 0.9 MACs on validation
        can run slower than the plain model in wall time. Below 1, ties in accuracy go to the
        cheaper configuration. Below the cheapest configuration raises :class:`DyceError`.
        """
        budget = float(relative_macs)
        if not math.isfinite(budget):
            raise DyceError(f"is {relative_macs!r}; give a relative MACs budget such as 0.7",
                            field="budget")
        if budget >= 1.0:
            return self._activate(original_entry(self.num_positions))
        candidates = list(self.front)
        affordable = [e for e in candidates if e.relative_macs <= budget]
        if not candidates:
            raise DyceError("the bundle's front is empty", path=self.source, field="front")
        if not affordable:
            cheapest = min(candidates, key=lambda e: e.relative_macs)
            raise DyceError(
                f"{budget} is below the cheapest configuration (#{cheapest.index}, "
                f"{cheapest.method}, relative MACs {cheapest.relative_macs:.4f})",
                path=self.source, field="budget",
            )
        best = max(affordable, key=lambda e: (e.relative_acc, -e.relative_macs))
        return self._activate(best)

    def set_lambda(self, lambda_value: float, method: str | None = None) -> FrontEntry:
        """The configuration searched with ``lambda_value``.

        From the bundle's searched configurations (``dyce bundle --searched``): the one searched
        with this λ, else the one with the nearest searched λ (its λ is in :attr:`current`).
        For a method without them only the front is known, where a λ whose configuration was
        filtered out would silently get another λ's configuration: there, a λ that is not a
        front row raises :class:`DyceError`. With several methods, ``method`` picks one.
        """
        target = float(lambda_value)
        if not math.isfinite(target) or target < 0:
            raise DyceError(f"is {lambda_value!r}; give a λ >= 0 such as 0.9",
                            path=self.source, field="lambda")
        def matching(entries: Sequence[FrontEntry]) -> list[FrontEntry]:
            return [e for e in entries if e.lambda_value is not None
                    and (method is None or e.method == method)]

        rows, from_searched = matching(self.searched), True
        if not rows:
            rows, from_searched = matching(self.front), False
        what = "searched table" if from_searched else "front"
        if not rows:
            raise DyceError(f"the bundle has no λ configuration"
                            f"{'' if method is None else ' of ' + method}",
                            path=self.source, field="lambda")
        methods = sorted({e.method for e in rows})
        if len(methods) > 1:
            raise DyceError(f"the {what} has λ configurations of {', '.join(methods)}; "
                            "choose a method", path=self.source, field="method")
        best = min(rows, key=lambda e: abs(e.lambda_value - target))
        exact = abs(best.lambda_value - target) <= 1e-9 * max(1.0, abs(target))
        if not exact and not from_searched:
            listed = ", ".join(f"{v:g}" for v in sorted({e.lambda_value for e in rows}))
            raise DyceError(
                f"λ = {target:g} is not a row of the bundle's front ({listed}), and the bundle "
                "keeps no searched table to find its configuration; rebuild it with "
                "dyce bundle --searched EVAL.parquet", path=self.source, field="lambda")
        return self._activate(best)

    def set_risk(self, tolerance: float, delta: float,
                 calibration_records: ExitRecords | str | os.PathLike | None = None,
                 bound: str = "clopper-pearson", loss: str = "auto") -> Selection:
        """Cheapest front configuration whose relative accuracy drop vs the original model is
        ``<= tolerance`` with probability ``>= 1 - delta``, tested on calibration records.

        The same selection as ``dyce select`` (:func:`dyce.runtime.selection.select_operating_point`)
        over the bundle's front: tests ordered by each configuration's search-split loss when
        the bundle has it, else from the most to the least expensive (validation MACs).
        ``calibration_records`` default to those stored in the bundle (``dyce bundle
        --calibration-records``). Activates the choice (the original model when nothing
        passes) and returns the :class:`dyce.runtime.selection.Selection`.
        """
        from dyce.records.format import read_records
        from dyce.runtime.selection import Candidate, select_operating_point

        records = calibration_records if calibration_records is not None else self.calibration
        if records is None:
            raise DyceError("the bundle holds no calibration records (dyce bundle "
                            "--calibration-records); give some", path=self.source,
                            field="calibration_records")
        if not isinstance(records, ExitRecords):
            records = read_records(records)
        self._check_records(records)
        if not self.front:
            raise DyceError("the bundle's front is empty", path=self.source, field="front")
        ranked = all(e.search_loss is not None for e in self.front)
        candidates = [Candidate(e.as_config(), e.relative_macs, {"index": i},
                                search_loss=e.search_loss) for i, e in enumerate(self.front)]
        selection = select_operating_point(candidates, records, self.macs, tolerance=tolerance,
                                           delta=delta, bound=bound, loss=loss,
                                           order="risk" if ranked else "macs")
        self._activate(self.front[selection.search_row["index"]] if selection.passed
                       else original_entry(self.num_positions))
        return selection

    def _check_records(self, records: ExitRecords) -> None:
        where = records.source
        if records.num_positions != self.num_positions:
            raise DyceError(f"have {records.num_positions} positions, the bundle "
                            f"{self.num_positions}", path=where, field="num_positions")
        if list(records.exit_types) != self.exit_types:
            raise DyceError(f"exit types {list(records.exit_types)} differ from the bundle's "
                            f"{self.exit_types}", path=where, field="exit_types")
        if records.num_classes != int(self.spec["num_classes"]):
            raise DyceError(f"{records.num_classes} classes, the bundle "
                            f"{self.spec['num_classes']}", path=where, field="num_classes")

    # ----------------------------------------------------------------------- inference

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`DyceError` unless ``x`` is ``(B, in_channels, H, W)`` of the bundle."""
        expected = (self.in_channels, *self.input_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != expected:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DyceError(f"expected a batch (B, {', '.join(map(str, expected))}), got {got}",
                            field="input")
        if not x.is_floating_point():
            raise DyceError(f"expected floating-point images, got {x.dtype}", field="input")

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> RuntimeOutput:
        """Classify a batch ``x`` ``(B, C, H, W)`` with the active configuration."""
        self.check_input(x)
        plan = self._plan
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
        if plan.exits:
            return self._early_exit(x, plan)
        # No exit enabled: the plain backbone, nothing per stage (overhead: a few microseconds).
        confidence, prediction = _softmax_top1(self.backbone(x))
        if confidence.device.type != "cpu":
            confidence, prediction = confidence.cpu(), prediction.cpu()
        return RuntimeOutput(prediction, None, plan.leave_macs, confidence,
                             self.num_positions - 1)

    def _early_exit(self, x: torch.Tensor, plan: _Plan) -> RuntimeOutput:
        batch = x.shape[0]
        device = x.device
        predictions = torch.empty(batch, dtype=torch.int64, device=device)
        confidences = torch.empty(batch, dtype=torch.float32, device=device)
        positions = torch.full((batch,), self.num_positions - 1, dtype=torch.int64, device=device)
        in_flight = torch.arange(batch, device=device)
        features = x
        next_stage = 0
        previous: torch.Tensor | None = None  # patience: last exit's class and run length
        run = torch.zeros(batch, dtype=torch.int64, device=device)
        for position, head, threshold in plan.exits:
            while next_stage <= position:
                features = self.stages[next_stage](features)
                next_stage += 1
            confidence, prediction = _softmax_top1(head(features))
            if plan.patience is None:
                # Compare in float64 like the evaluator on the records: t is a Python float.
                leave = confidence.double() > threshold
            else:  # as dyce.evaluate.strategies.patience_exit_positions
                if previous is not None:
                    run = torch.where(prediction == previous, run + 1, 0)
                leave = run >= plan.patience
                previous = prediction
            if bool(leave.any()):
                leaving = in_flight[leave]
                predictions[leaving] = prediction[leave]
                confidences[leaving] = confidence[leave]
                positions[leaving] = position
                stay = ~leave
                in_flight, features = in_flight[stay], features[stay]
                if plan.patience is not None:
                    previous, run = previous[stay], run[stay]
                if in_flight.numel() == 0:
                    break
        if in_flight.numel():
            for stage in self.stages[next_stage:]:
                features = stage(features)
            confidence, prediction = _softmax_top1(features)
            predictions[in_flight] = prediction
            confidences[in_flight] = confidence
        positions = positions.cpu()
        return RuntimeOutput(predictions.cpu(), positions, plan.leave_macs, confidences.cpu())


def prediction_summary(
    exit_position: np.ndarray, macs: np.ndarray, ori_macs: float, num_positions: int,
    predictions: np.ndarray | None = None, labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Figures of a prediction run: ``samples``, ``relative_macs`` (mean MACs / ``ori_macs``),
    ``exit_ratio`` (``P`` fractions per position) and ``accuracy`` (None without labels)."""
    count = int(exit_position.shape[0])
    if count == 0:
        raise DyceError("no samples were predicted", field="input")
    ratio = np.bincount(exit_position.astype(np.int64), minlength=num_positions) / count
    accuracy = None
    if labels is not None and predictions is not None:
        accuracy = float(np.mean(predictions == labels))
    return {"samples": count, "relative_macs": float(np.mean(macs) / ori_macs),
            "exit_ratio": [float(r) for r in ratio], "accuracy": accuracy}
