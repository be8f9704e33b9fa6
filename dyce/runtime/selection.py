"""Operating points chosen without the validation split: risk control on a calibration split.

For each method, :func:`select_operating_point` picks the cheapest searched configuration whose
*relative* accuracy drop versus the original model is at most ``tolerance`` with probability at
least ``1 - delta`` over the draw of the calibration split.

Why the loss bounds the relative drop. Write ``F`` for "final head right" and ``C`` for
"configuration right" on a new sample. The relative drop is

    1 - P(C) / P(F) = (P(F, not C) - P(not F, C)) / P(F)  <=  P(F, not C) / P(F) = P(not C | F),

so it suffices to bound the *conditional* error ``r = P(configuration wrong | final head
right)``: the gains (samples the configuration fixes) are ignored, which only makes the bound
conservative. The calibration samples whose final head is right are, given their number ``n``,
an i.i.d. sample of that conditional distribution; on them ``loss_i = 1[configuration wrong]`` is
Bernoulli(``r``) and a ``1 - delta`` upper confidence bound of its mean
(:func:`dyce.risk.upper_bound`, Clopper–Pearson by default) bounds ``r``, hence the drop. No
separate estimate of the final head's accuracy is needed (comparing an absolute loss rate with
``tolerance × accuracy`` would need one, with its own error budget).

Counting the fixes (``loss="net"``, :func:`net_drop_bound`). When exits often correct the final
head, ignoring the fixes wastes a lot: the absolute drop is ``p_b − p_f``, bounded through the
discordance rate and the share of breaks among discordant samples (each at ``delta/4``), and
divided by a ``delta/2`` lower bound of the final head's accuracy. The default ``"auto"`` takes the
smaller of the two bounds, each computed at ``delta/2`` (a union bound keeps the level): close to
the better of the two on both kinds of data, at the price of halving ``delta``.

Which configuration (Learn-then-Test, fixed-sequence testing). The candidates are tested one by
one in an order fixed *without the calibration split* — by default the loss measured on the
search split (the relative drop for ``net``/``auto``), lowest first (ties: the more expensive
first), skipping any candidate not cheaper than every one before it (:func:`staircase`) — each
for ``H0: r > tolerance`` at level ``delta``, stopping at the first one not rejected. The family-wise error of the rejected set
is then at most ``delta`` without a multiplicity correction, so *any* rule may pick among the
rejected (passed) configurations: we take the cheapest on the calibration split. Ordering by the
search split's loss tests the configurations most likely to pass first, so one risky
configuration does not stop the sequence early. Ordering by cost (``order="macs"``, most
expensive first) needs no search records but can stop early: a cheap peer setting with a weak exit
type may sit between two good ones. Ordering by the search split's *net* relative accuracy would
be wrong-headed: a configuration whose exits fix many of the final head's mistakes looks accurate
there while its loss (which ignores fixes) is high. When nothing passes, the original model (no
exits, loss 0) is the answer, flagged ``passed = False``.

The guarantee holds per method (each call spends its own ``delta``); choosing between methods by
their calibration results afterwards is outside it. Pure numpy; no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dyce.errors import DyceError
from dyce.macs.info import MacsInfo
from dyce.records.format import ExitRecords
from dyce.runtime.risk import BOUNDS, upper_bound

#: Orders of the fixed sequence (both from search-split figures, never the calibration split).
ORDERS = ("risk", "macs")

#: Losses the test bounds: ``breaks`` (final head right, configuration wrong; conditional on the
#: final head being right), ``net`` (breaks minus fixes, over the final head's accuracy) or
#: ``auto`` (the smaller of the two bounds, each at ``delta/2``).
LOSSES = ("auto", "breaks", "net")

#: Format tag of CHOICE.json files.
CHOICE_FORMAT = "dyce-choice"


@dataclass(frozen=True)
class Candidate:
    """One searched configuration: its decoded ``config`` and the figures that order the tests.

    ``relative_macs_tr``: its relative MACs measured without the calibration split (the search
    split's in tables, the validation split's in a bundle); ``search_loss``: its loss on the
    search split (see :func:`configuration_losses`; needed for ``order="risk"``); ``row``:
    whatever identifies it (kept in the selection as ``search_row``).
    """

    config: list | dict
    relative_macs_tr: float
    row: dict
    search_loss: float | None = None


@dataclass(frozen=True)
class Selection:
    """The operating point chosen for one method (one value of CHOICE.json).

    Attributes:
        config: ``[[exit_type or -1, threshold], …]`` per candidate position (or a patience
            setting); the original model ``[[-1, 1.0], …]`` when nothing passed.
        passed: whether a searched configuration cheaper than the original model passed
            (``False``: the original model).
        relative_macs, relative_acc, accuracy_drop, raw_acc: calibration-split figures of
            ``config`` (``accuracy_drop = 1 - relative_acc``).
        loss: ``loss_name="breaks"``: fraction of the final head's right calibration answers
            that ``config`` gets wrong; ``"net"``: (breaks − fixes) over the final head's right
            answers (the relative drop on calib).
        bound: the ``1 - delta`` upper confidence bound of the relative drop it implies
            (``bound_name``); ``<= tolerance`` when passed.
        tolerance, delta: the promise: relative accuracy drop ``<= tolerance`` with probability
            ``>= 1 - delta``.
        num_samples: calibration samples ``n``; ``num_final_correct`` of them the final head
            gets right (the loss's sample size).
        tested, candidates: configurations tested before the sequence stopped / offered.
        order: ``"risk"`` or ``"macs"``.
        search_row: the chosen row's search-table columns (``None`` for the original model).
    """

    config: list | dict
    passed: bool
    relative_macs: float
    relative_acc: float
    accuracy_drop: float
    raw_acc: float
    loss: float
    bound: float
    bound_name: str
    loss_name: str
    tolerance: float
    delta: float
    num_samples: int
    num_final_correct: int
    tested: int
    candidates: int
    order: str
    search_row: dict | None

    def as_json(self) -> dict[str, Any]:
        """The JSON object stored under the method's name in CHOICE.json."""
        return asdict(self)

    def summary(self, method: str) -> str:
        """One line for logs and the CLI."""
        head = (f"{method}: {100 * (1 - self.relative_macs):.1f} % MACs saved"
                if self.passed else f"{method}: no configuration passed; the original model")
        return (f"{head} (calib: relative accuracy {self.relative_acc:.4f}, loss "
                f"{self.loss:.4f}, {self.bound_name} bound {self.bound:.4f} vs tolerance "
                f"{self.tolerance:g} at delta {self.delta:g}; {self.tested} of "
                f"{self.candidates} tested, n = {self.num_samples})")


def check_level(value: float, name: str) -> float:
    """``value`` as float when ``0 < value < 1``, else :class:`DyceError` naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DyceError(f"is {value!r}; must be a number strictly between 0 and 1",
                        field=name) from None
    if not (math.isfinite(number) and 0.0 < number < 1.0):
        raise DyceError(f"is {value!r}; must lie strictly between 0 and 1", field=name)
    return number


def original_config(num_positions: int) -> list[list[float]]:
    """The original model: no exit at any of the ``P-1`` candidate positions."""
    return [[-1, 1.0] for _ in range(num_positions - 1)]


def testing_order(candidates: Sequence[Candidate], order: str = "risk") -> list[int]:
    """Indices of ``candidates`` in testing order (search-split figures only).

    ``"risk"``: loss on the search split, lowest first, keeping only the candidates cheaper
    than every one before them (:func:`staircase`); ``"macs"``: relative MACs on the search
    split, most expensive first. Remaining ties: the more expensive first, then table order.
    """
    if order not in ORDERS:
        raise DyceError(f"is {order!r}; choose one of {', '.join(ORDERS)}", field="order")
    macs = np.array([c.relative_macs_tr for c in candidates], dtype=np.float64)
    index = np.arange(len(candidates))
    if order == "macs":
        keys: tuple = (index, -macs)
    else:
        if any(c.search_loss is None for c in candidates):
            raise DyceError("needs every candidate's loss on the search split (search records)",
                            field="order")
        keys = (index, -macs, np.array([c.search_loss for c in candidates], dtype=np.float64))
    if not all(np.all(np.isfinite(key)) for key in keys):
        raise DyceError("search-split figures must be finite numbers", field="relative_macs_tr")
    ordered = np.lexsort(keys)
    if order == "risk":
        ordered = ordered[staircase(macs[ordered])]
    return [int(i) for i in ordered]


def staircase(macs: np.ndarray) -> np.ndarray:
    """Indices of the entries of float64 ``macs`` (relative MACs, in testing order) that are
    strictly cheaper than every entry before them.

    In the loss order these are the search split's Pareto front of (loss, MACs): a dropped
    candidate costs at least as much as one tested before it with no more loss, so it could
    never be the cheapest passed configuration, only stop the sequence early.
    """
    previous = np.minimum.accumulate(np.concatenate(([np.inf], macs[:-1])))
    return np.flatnonzero(macs < previous)


def configuration_losses(records: ExitRecords, macs: MacsInfo,
                         configs: Sequence[list | dict], loss: str = "auto") -> np.ndarray:
    """float64 ``(len(configs),)``: each configuration's loss on ``records`` (NaN when the final
    head gets no sample right).

    ``"breaks"``: the fraction of the samples the final head gets right that the configuration
    gets wrong; ``"net"`` and ``"auto"``: (breaks − fixes) / samples the final head gets right,
    i.e. the relative accuracy drop.
    """
    from dyce.evaluate.strategies import evaluate_any

    if loss not in LOSSES:
        raise DyceError(f"is {loss!r}; choose one of {', '.join(LOSSES)}", field="loss")
    final_correct = records.correct[-1]
    kept = int(np.count_nonzero(final_correct))
    out = np.full(len(configs), np.nan)
    if kept:
        for i, config in enumerate(configs):
            right = evaluate_any(records, macs, config, per_sample=True).prediction == records.labels
            breaks = np.count_nonzero(final_correct & ~right)
            fixes = np.count_nonzero(~final_correct & right) if loss != "breaks" else 0
            out[i] = (breaks - fixes) / kept
    return out


def with_search_losses(candidates: Sequence[Candidate], search_records: ExitRecords,
                       macs: MacsInfo, loss: str = "auto") -> list[Candidate]:
    """``candidates`` with ``search_loss`` measured on ``search_records`` (the search split)."""
    from dataclasses import replace

    losses = configuration_losses(search_records, macs, [c.config for c in candidates], loss)
    if np.isnan(losses).any():
        raise DyceError("the final head gets no search sample right", path=search_records.source,
                        field="label")
    return [replace(c, search_loss=float(loss)) for c, loss in zip(candidates, losses,
                                                                    strict=True)]


def _count_upper(count: int, total: int, delta: float, bound: str) -> float:
    """``1 - delta`` upper confidence bound of a rate from ``count`` of ``total`` (1 if none)."""
    if total == 0:
        return 1.0
    return upper_bound(np.arange(total) < count, delta, bound)


def net_drop_bound(breaks: int, fixes: int, final_correct: int, num_samples: int, delta: float,
                   bound: str = "clopper-pearson") -> float:
    """``1 - delta`` upper confidence bound of the relative accuracy drop, fixes counted.

    Per sample the absolute drop is ``+1`` (a break: final head right, configuration wrong),
    ``-1`` (a fix) or 0, so ``drop = p_d·(2q − 1)`` with ``p_d`` the discordance rate and ``q``
    the share of breaks among discordant samples. Upper bounds of ``p_d`` (from
    ``breaks + fixes`` of ``num_samples``) and of ``q`` (binomial given the discordant count),
    each at ``delta/4``, bound the drop by ``max(p_d⁺·(2q⁺ − 1), 0)``; divided by a ``delta/2``
    lower bound of the final head's accuracy it bounds the relative drop (union bound: all
    three hold with probability ``>= 1 - delta``).
    """
    discordant = breaks + fixes
    rate = _count_upper(discordant, num_samples, delta / 4, bound)
    share = _count_upper(breaks, discordant, delta / 4, bound)
    final_low = 1.0 - _count_upper(num_samples - final_correct, num_samples, delta / 2, bound)
    drop = max(rate * (2.0 * share - 1.0), 0.0)
    return math.inf if final_low <= 0 else drop / final_low


def select_operating_point(
    candidates: Sequence[Candidate],
    records: ExitRecords,
    macs: MacsInfo,
    *,
    tolerance: float,
    delta: float = 0.1,
    bound: str = "clopper-pearson",
    order: str = "risk",
    loss: str = "auto",
) -> Selection:
    """Cheapest candidate whose relative accuracy drop is ``<= tolerance`` w.p. ``>= 1 - delta``.

    ``records``: the calibration split (used by nothing else). Candidates are evaluated on it
    lazily, in :func:`testing_order`, until the first one whose bound exceeds ``tolerance``; see the
    module docstring for the argument (``loss="breaks"``) and :func:`net_drop_bound`
    (``loss="net"``). Returns a :class:`Selection`.
    """
    from dyce.evaluate.strategies import evaluate_any

    tolerance = check_level(tolerance, "tolerance")
    delta = check_level(delta, "delta")
    if bound not in BOUNDS:
        raise DyceError(f"is {bound!r}; choose one of {', '.join(BOUNDS)}", field="bound")
    if loss not in LOSSES:
        raise DyceError(f"is {loss!r}; choose one of {', '.join(LOSSES)}", field="loss")
    if records.num_samples == 0:
        raise DyceError("the calibration records hold no samples", path=records.source,
                        field="label")
    final_correct = records.correct[-1]
    kept = int(np.count_nonzero(final_correct))
    if kept == 0:
        raise DyceError("the final head gets no calibration sample right: relative accuracy "
                        "is undefined", path=records.source, field="label")
    passed: list[tuple[int, Any, float, float]] = []  # (candidate, evaluation, loss, bound)
    tested = 0
    for index in testing_order(candidates, order):
        evaluation = evaluate_any(records, macs, candidates[index].config, per_sample=True)
        right = evaluation.prediction == records.labels
        breaks = final_correct & ~right
        fixes = int(np.count_nonzero(~final_correct & right))
        share = delta / 2 if loss == "auto" else delta  # auto: a union bound over the two
        value = math.inf
        if loss in ("breaks", "auto"):
            value = upper_bound(breaks[final_correct], share, bound)
        if loss in ("net", "auto"):
            value = min(value, net_drop_bound(int(np.count_nonzero(breaks)), fixes, kept,
                                              records.num_samples, share, bound))
        empirical = (np.count_nonzero(breaks) - (fixes if loss != "breaks" else 0)) / kept
        tested += 1
        if value > tolerance:
            break
        passed.append((index, evaluation, float(empirical), value))
    common = dict(bound_name=bound, loss_name=loss, tolerance=tolerance, delta=delta,
                  num_samples=records.num_samples, num_final_correct=kept, tested=tested,
                  candidates=len(candidates), order=order)
    # The original model (relative MACs 1, loss 0) is always valid: a passed configuration is
    # only worth choosing when it is cheaper.
    passed = [item for item in passed if item[1].relative_macs < 1.0]
    if not passed:
        return Selection(config=original_config(records.num_positions), passed=False,
                         relative_macs=1.0, relative_acc=1.0, accuracy_drop=0.0,
                         raw_acc=records.final_accuracy, loss=0.0, bound=0.0, search_row=None,
                         **common)
    # Any rule may pick among the passed configurations: the cheapest on calib (then the most
    # accurate, then the first tested).
    index, evaluation, loss, value = min(
        passed, key=lambda item: (item[1].relative_macs, -item[1].relative_acc))
    return Selection(
        config=candidates[index].config, passed=True,
        relative_macs=float(evaluation.relative_macs),
        relative_acc=float(evaluation.relative_acc),
        accuracy_drop=1.0 - float(evaluation.relative_acc), raw_acc=float(evaluation.raw_acc),
        loss=loss, bound=value, search_row=candidates[index].row, **common,
    )


def choice_document(selections: dict[str, Selection], **provenance: Any) -> dict[str, Any]:
    """CHOICE.json: an object keyed by method name (each value :meth:`Selection.as_json`).

    ``provenance`` (records, tables, macs_info paths …) is stored in every value under
    ``"source"`` so that each method's entry stands alone.
    """
    return {method: {**selection.as_json(), "format": CHOICE_FORMAT, "source": provenance}
            for method, selection in selections.items()}


def read_choice(path: str) -> dict[str, dict[str, Any]]:
    """Read and check CHOICE.json (``dyce select``); returns it keyed by method."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise DyceError("file not found", path=path) from None
    except (OSError, ValueError) as error:
        raise DyceError(f"not a JSON file: {error}", path=path) from None
    if not isinstance(data, dict) or not data:
        raise DyceError("not a choice file (expected a non-empty object keyed by method)",
                        path=path)
    for method, value in data.items():
        if not isinstance(value, dict) or value.get("format") != CHOICE_FORMAT:
            raise DyceError(f"not a {CHOICE_FORMAT} entry", path=path, field=method)
        for key in ("config", "passed", "tolerance", "delta"):
            if key not in value:
                raise DyceError("missing", path=path, field=f"{method}.{key}")
    return data


#: Search-table columns copied into a selection's ``search_row`` when present.
SEARCH_ROW_COLUMNS = ("model", "dataset", "method", "lambda", "candidate", "parameter_name",
                      "parameter", "exit_type", "config", "relative_macs_tr", "raw_macs_tr",
                      "relative_acc_tr", "raw_acc_tr", "exit_ratio_tr")


def candidates_by_method(
    tables: Sequence[tuple[str, Any, dict]], records: ExitRecords,
) -> dict[str, list[Candidate]]:
    """The configurations of search tables, grouped by their ``method`` column.

    ``tables``: ``(path, polars DataFrame, metadata)`` as :func:`dyce.results.read_table` gives.
    Every table must have been searched on records of the model, dataset and exit table of
    ``records`` (the calibration split), which must not be the split it was searched on. Raises :class:`DyceError`
    naming the table and the field otherwise.
    """
    from dyce.report.tables import parse_config

    groups: dict[str, list[Candidate]] = {}
    for path, df, metadata in tables:
        _check_provenance(path, df, metadata, records)
        rows = df.select([c for c in SEARCH_ROW_COLUMNS if c in df.columns]).to_dicts()
        for number, row in enumerate(rows):
            config = parse_config(row["config"], records, source=path, row=number)
            candidate = Candidate(config, float(row["relative_macs_tr"]),
                                  {"table": path, "row": number, **row})
            groups.setdefault(str(row["method"]), []).append(candidate)
    if not groups:
        raise DyceError("the search tables hold no configurations",
                        path=", ".join(p for p, _, _ in tables), field="config")
    return groups


def _check_provenance(path: str, df: Any, metadata: dict, records: ExitRecords) -> None:
    """Raise unless the table at ``path`` was searched for the model/dataset of ``records``."""
    from dyce.report.tables import check_exit_table

    check_exit_table(metadata, records, path)
    classes = metadata.get("num_classes")
    if classes is not None and classes != records.num_classes:
        raise DyceError(f"searched on {classes} classes, but {records.source} have "
                        f"{records.num_classes}", path=path, field="num_classes")
    # The records the table was searched on name their model and dataset (the table's own
    # model/dataset columns may be renamed with dyce search --model/--dataset).
    for name in ("model", "dataset"):
        ours, theirs = getattr(records, name), metadata.get(f"search_{name}")
        if ours and theirs and theirs != ours:
            raise DyceError(f"searched on records of {name} {theirs}, but the calibration "
                            f"records {records.source} are of {ours}", path=path, field=name)
    names = metadata.get("position_names")
    if names is not None and list(names) != list(records.position_names):
        raise DyceError(f"searched on records with positions {list(names)}, but "
                        f"{records.source} have {list(records.position_names)}", path=path,
                        field="position_names")
    searched_on = metadata.get("search_records")
    same_file = searched_on is not None and records.source is not None and (
        _same_path(searched_on, records.source))
    same_split = bool(records.split) and metadata.get("search_split") == records.split
    if same_file or same_split:
        raise DyceError(f"was searched on the {records.split or 'same'} records "
                        f"{records.source}; calibration needs held-out samples",
                        path=path, field="search_records")


def _same_path(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def choice_table(choice: dict[str, dict[str, Any]]) -> Any:
    """A polars table of CHOICE.json: one row per method, for ``dyce evaluate``.

    Columns: the search-table columns of each chosen row (the original model's row has only
    ``model``, ``dataset``, ``method`` and ``config``), then ``tolerance``, ``delta``,
    ``passed`` and the calibration figures ``calib_relative_macs``, ``calib_relative_acc``,
    ``calib_accuracy_drop``, ``calib_loss``, ``calib_bound``, ``calib_num_samples``.
    """
    import polars as pl

    from dyce.report.tables import SEARCH_SCHEMA, config_to_json

    rows = []
    for method, value in choice.items():
        source = value.get("source") or {}
        row = {name: None for name in SEARCH_SCHEMA}
        row.update({key: val for key, val in (value.get("search_row") or {}).items()
                    if key in SEARCH_SCHEMA})
        row.update(model=row["model"] or value.get("model") or source.get("model") or "",
                   dataset=row["dataset"] or value.get("dataset") or source.get("dataset") or "",
                   method=method, config=config_to_json(value["config"]))
        row.update(tolerance=float(value["tolerance"]), delta=float(value["delta"]),
                   passed=bool(value["passed"]))
        for key in ("relative_macs", "relative_acc", "accuracy_drop", "loss", "bound"):
            row[f"calib_{key}"] = float(value[key]) if key in value else None
        row["calib_num_samples"] = int(value["num_samples"]) if "num_samples" in value else None
        rows.append(row)
    schema = {**SEARCH_SCHEMA, "tolerance": pl.Float64(), "delta": pl.Float64(),
              "passed": pl.Boolean(), "calib_relative_macs": pl.Float64(),
              "calib_relative_acc": pl.Float64(), "calib_accuracy_drop": pl.Float64(),
              "calib_loss": pl.Float64(), "calib_bound": pl.Float64(),
              "calib_num_samples": pl.Int64()}
    return pl.DataFrame(rows, schema=schema)


def promise_columns(evaluated: Any) -> Any:
    """``evaluated`` (a choice table with validation columns) plus ``macs_saved``,
    ``accuracy_drop`` and ``met_tolerance`` (validation relative accuracy ``>= 1 - tolerance``,
    allowing 1e-12 of rounding)."""
    import polars as pl

    return evaluated.with_columns(
        macs_saved=1.0 - pl.col("relative_macs"),
        accuracy_drop=1.0 - pl.col("relative_acc"),
        met_tolerance=pl.col("relative_acc") >= 1.0 - pl.col("tolerance") - 1e-12,
    )


#: Columns :func:`selected_columns` adds to a summary, per (model, dataset, method).
SELECTED_COLUMNS = ("selected_macs_saved", "selected_accuracy_drop", "selected_met_tolerance",
                    "selected_passed", "selected_calib_bound", "selected_config")


def selected_columns(promises: Sequence[Any]) -> Any:
    """Per (model, dataset, method), the validation figures of the configuration chosen without
    validation: ``promises`` are tables written by ``dyce evaluate CHOICE.json``.

    Columns: ``model``, ``dataset``, ``method`` and :data:`SELECTED_COLUMNS` (MACs saved and
    relative accuracy drop on validation, whether the drop is within the tolerance, whether a
    searched configuration passed on calib, its calib bound, its config).
    """
    import polars as pl

    frames = []
    for table in promises:
        for name in ("model", "dataset", "method", "macs_saved", "accuracy_drop",
                     "met_tolerance", "passed", "calib_bound", "config"):
            if name not in table.columns:
                raise DyceError("column missing (not a 'dyce evaluate CHOICE.json' table)",
                                field=name)
        frames.append(table.select(
            "model", "dataset", "method",
            selected_macs_saved="macs_saved", selected_accuracy_drop="accuracy_drop",
            selected_met_tolerance="met_tolerance", selected_passed="passed",
            selected_calib_bound="calib_bound", selected_config="config",
        ))
    return pl.concat(frames, how="vertical_relaxed") if frames else None
