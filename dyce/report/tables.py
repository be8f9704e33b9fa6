"""Result tables (polars): searched configurations, their validation figures, the Pareto front.

A search table has one row per configuration (columns in ``docs/architecture.md``, "Result
tables"); :func:`evaluate_table` adds the validation columns; :func:`pareto_front` keeps the rows
that improve accuracy as MACs grow; :func:`single_exit_points` and :func:`summary_figures` give the
reference points and headline numbers. Tables are written as Parquet (search metadata in the
file's key-value metadata under ``dyce``) and, for the seed API, CSV.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from dyce.errors import DyceError
from dyce.io import atomic_path
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.format import ExitRecords, check_compatible

#: Parquet key-value metadata key holding the search's JSON description.
METADATA_KEY = "dyce"

SEARCH_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "dataset": pl.String(),
    "method": pl.String(),
    "lambda": pl.Float64(),
    "parameter_name": pl.String(),
    "parameter": pl.Float64(),
    "exit_type": pl.Int64(),
    "config": pl.String(),
    "relative_macs_tr": pl.Float64(),
    "raw_macs_tr": pl.Float64(),
    "relative_acc_tr": pl.Float64(),
    "raw_acc_tr": pl.Float64(),
    "exit_ratio_tr": pl.String(),
}
VALIDATION_SCHEMA: dict[str, pl.DataType] = {
    "relative_macs": pl.Float64(),
    "raw_macs": pl.Float64(),
    "relative_acc": pl.Float64(),
    "raw_acc": pl.Float64(),
    "exit_ratio": pl.String(),
}

#: Numeric figures of a result table (checked to be numbers, finite where present).
FIGURE_COLUMNS = (
    "relative_macs", "raw_macs", "relative_acc", "raw_acc", "relative_macs_tr", "raw_macs_tr",
    "relative_acc_tr", "raw_acc_tr", "lambda", "parameter",
)

#: Columns and order of the seed API's CSV files (``search_and_eval``).
SEED_COLUMNS = (
    "relative_macs", "raw_macs", "relative_acc", "raw_acc", "relative_macs_tr", "raw_macs_tr",
    "relative_acc_tr", "raw_acc_tr", "config", "exit_ratio", "lambda",
)

#: Column naming each row's candidate when a search writes several rows per λ
#: (``searched``, ``raise:<f>``, ``shared:<s>``; see :mod:`dyce.search.candidates`).
CANDIDATE_COLUMN = "candidate"

#: Rows of one front: same model, dataset and method.
DEFAULT_FRONT_GROUPS = ("model", "dataset", "method")


# --------------------------------------------------------------------------- building tables


def search_table(
    results: Iterable[Any],
    *,
    method: str,
    model: str = "",
    dataset: str = "",
) -> pl.DataFrame:
    """One row per searched configuration, with its figures on the search records.

    ``results``: :class:`dyce.search.SearchResult` (``lambda_``, ``config``, ``evaluation``) or
    :class:`dyce.evaluate.strategies.StrategyResult` (``parameter_name``, ``parameter``, ``exit_type``,
    ``config``, ``evaluation``) objects. DyCE results record ``parameter_name = "lambda"`` and
    ``parameter = lambda``; peer strategies leave ``lambda`` null. ``exit_type`` is the one exit
    type a single-type method used (``samethres`` and the peer strategies), else null.
    MACs are per sample; ``raw_acc_tr`` is top-1 accuracy; ``exit_ratio_tr`` is a JSON list of the
    ``P`` fractions of samples leaving at each position. Results that carry a ``candidate``
    (:class:`dyce.search.candidates.CandidateResult`) add a ``candidate`` column after ``parameter``:
    several rows per λ, keyed by (``lambda``, ``candidate``).
    """
    rows: dict[str, list] = {name: [] for name in SEARCH_SCHEMA}
    candidates: list[str | None] = []
    for result in results:
        evaluation = result.evaluation
        if hasattr(result, "lambda_"):
            lam = float(result.lambda_)
            parameter_name, parameter = "lambda", lam
            exit_type = _single_exit_type(result.config) if method == "samethres" else None
        else:
            lam = None
            parameter_name, parameter = result.parameter_name, float(result.parameter)
            exit_type = int(result.exit_type)
        rows["model"].append(model)
        rows["dataset"].append(dataset)
        rows["method"].append(method)
        rows["lambda"].append(lam)
        rows["parameter_name"].append(parameter_name)
        rows["parameter"].append(parameter)
        rows["exit_type"].append(exit_type)
        rows["config"].append(config_to_json(result.config))
        rows["relative_macs_tr"].append(float(evaluation.relative_macs))
        rows["raw_macs_tr"].append(float(evaluation.raw_macs))
        rows["relative_acc_tr"].append(float(evaluation.relative_acc))
        rows["raw_acc_tr"].append(float(evaluation.raw_acc))
        rows["exit_ratio_tr"].append(_ratio_json(evaluation.exit_ratio))
        candidates.append(getattr(result, "candidate", None))
    table = pl.DataFrame(rows, schema=SEARCH_SCHEMA)
    if any(name is not None for name in candidates):
        table = table.insert_column(table.columns.index("parameter") + 1,
                                    pl.Series(CANDIDATE_COLUMN, candidates, dtype=pl.String()))
    return table


def evaluate_table(
    search_df: pl.DataFrame,
    val_records: ExitRecords,
    macs: MacsInfo | dict,
    *,
    source: str | os.PathLike | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """``search_df`` plus the validation columns of every configuration, evaluated exactly.

    Threshold configurations go to :func:`dyce.evaluate.exact.evaluate_config`, patience settings to
    :func:`dyce.evaluate.strategies.evaluate_patience` (no calibration: validation figures are plain
    accuracy). ``source`` names the table's file in error messages. Adds ``relative_macs``,
    ``raw_macs`` (MACs per sample), ``relative_acc``, ``raw_acc`` and ``exit_ratio`` (JSON list of
    ``P`` fractions), replacing them if present.
    """
    from tqdm import tqdm

    from dyce.evaluate.strategies import evaluate_any

    macs = load_macs_info(macs)
    _require_columns(search_df, ("config",), source)
    values: dict[str, list] = {name: [] for name in VALIDATION_SCHEMA}
    configs = search_df.get_column("config").to_list()
    done: dict[str, Any] = {}  # rows with the same configuration (λs that agree) share the work
    for row, text in enumerate(tqdm(configs, desc="evaluate", disable=not progress)):
        evaluation = done.get(text)
        if evaluation is None:
            config = parse_config(text, val_records, source=source, row=row)
            evaluation = done[text] = evaluate_any(val_records, macs, config)
        values["relative_macs"].append(float(evaluation.relative_macs))
        values["raw_macs"].append(float(evaluation.raw_macs))
        values["relative_acc"].append(float(evaluation.relative_acc))
        values["raw_acc"].append(float(evaluation.raw_acc))
        values["exit_ratio"].append(_ratio_json(evaluation.exit_ratio))
    kept = search_df.drop([name for name in VALIDATION_SCHEMA if name in search_df.columns])
    return kept.hstack(pl.DataFrame(values, schema=VALIDATION_SCHEMA))


def pareto_front(
    df: pl.DataFrame,
    *,
    by: Sequence[str] | None = None,
    macs_column: str = "relative_macs",
    acc_column: str = "relative_acc",
) -> pl.DataFrame:
    """The filtered front: sort by MACs, keep a row only when it beats the last kept accuracy.

    Rows are sorted by ``macs_column`` (stable: ties keep their table order); the first row is
    kept, and each later row is kept when its ``acc_column`` is strictly higher than that of the
    last kept row, exactly the original release's filter. ``by``: columns whose distinct values
    each get their own front (e.g. ``("model", "dataset", "method")``); ``None`` = one front.
    """
    _require_columns(df, (macs_column, acc_column, *(by or ())), None)
    ordered = df.sort(macs_column, maintain_order=True, nulls_last=True)
    # The last kept row's accuracy is the running maximum of all earlier rows' accuracy (a row
    # not kept is never above it), so one vectorised comparison reproduces the sequential filter.
    previous_best = pl.col(acc_column).cum_max().shift(1)
    if by:
        previous_best = previous_best.over(list(by))
    keep = previous_best.is_null() | (pl.col(acc_column) > previous_best)
    return ordered.filter(keep)


def single_exit_points(records: ExitRecords, macs: MacsInfo | dict) -> pl.DataFrame:
    """Every exit alone, with every sample leaving there; plus the final head.

    Exit ``(p, k)`` alone costs ``backbone.macs[p] + head[k].macs[p]`` per sample; the final head
    costs ``ori_macs``. Columns: ``position``, ``position_name``, ``exit_type`` (null for the final
    head), ``exit_type_name`` (``"final"`` for it), ``raw_macs``, ``relative_macs``, ``raw_acc``,
    ``relative_acc`` (accuracy / final-head accuracy).
    """
    macs = load_macs_info(macs)
    check_compatible(records, macs)
    num_candidates = records.num_positions - 1
    types = records.num_exit_types
    positions = np.repeat(np.arange(num_candidates), types)
    exit_types = np.tile(np.arange(types), num_candidates)
    raw_macs = macs.backbone_macs[positions] + macs.head_macs[exit_types, positions]
    accuracy = records.correct[:-1].mean(axis=1) if records.num_samples else np.full(
        positions.size, np.nan
    )
    final_acc = records.final_accuracy
    frame = pl.DataFrame(
        {
            "position": np.append(positions, num_candidates).astype(np.int64),
            "position_name": [records.position_names[p] for p in positions]
            + [records.position_names[-1]],
            "exit_type": [int(k) for k in exit_types] + [None],
            "exit_type_name": [records.exit_types[k] for k in exit_types] + ["final"],
            "raw_macs": np.append(raw_macs, float(macs.ori_macs)),
            "raw_acc": np.append(accuracy, final_acc),
        },
        schema_overrides={"exit_type": pl.Int64()},
    )
    return frame.with_columns(
        relative_macs=pl.col("raw_macs") / float(macs.ori_macs),
        relative_acc=pl.col("raw_acc") / final_acc,
    ).select(
        "position", "position_name", "exit_type", "exit_type_name", "raw_macs", "relative_macs",
        "raw_acc", "relative_acc",
    )


# --------------------------------------------------------------------------- headline figures

# Relative accuracies are ratios of float sums; allow this much rounding below 1 - tolerance.
_ACC_SLACK = 1e-12


def savings_at_tolerance(
    df: pl.DataFrame,
    tolerance: float = 0.005,
    *,
    macs_column: str = "relative_macs",
    acc_column: str = "relative_acc",
) -> float:
    """MACs saved at ≤ ``tolerance`` relative accuracy drop: ``1 − relative_macs`` of the cheapest
    row whose ``acc_column`` is ≥ ``1 − tolerance`` (validation figures by default).

    Returns NaN when no row qualifies. The comparison allows 1e-12 of float rounding.
    """
    _require_columns(df, (macs_column, acc_column), None)
    ok = df.filter(pl.col(acc_column) >= 1.0 - tolerance - _ACC_SLACK)
    if ok.height == 0:
        return math.nan
    return 1.0 - float(ok.get_column(macs_column).min())


def summary_figures(
    df: pl.DataFrame,
    tolerance: float = 0.005,
    *,
    by: Sequence[str] = DEFAULT_FRONT_GROUPS,
) -> pl.DataFrame:
    """Per group (default model, dataset, method): the cheapest row within ``tolerance``.

    Columns: the ``by`` columns, ``tolerance``, ``macs_saved`` (``1 − relative_macs``, null when
    no row qualifies), and that row's ``relative_macs``, ``relative_acc``, ``parameter_name``,
    ``parameter``, ``candidate`` (when the table has one) and ``config``.
    """
    _require_columns(df, (*by, "relative_macs", "relative_acc"), None)
    if not by:
        df = df.with_columns(pl.lit("all").alias("_group"))
        return summary_figures(df, tolerance, by=("_group",)).drop("_group")
    extra = [c for c in ("parameter_name", "parameter", CANDIDATE_COLUMN, "config")
             if c in df.columns]
    groups = df.select(list(by)).unique(maintain_order=True)
    ok = (
        df.filter(pl.col("relative_acc") >= 1.0 - tolerance - _ACC_SLACK)
        .sort("relative_macs", maintain_order=True)
        .group_by(list(by), maintain_order=True)
        .first()
        .select(*by, "relative_macs", "relative_acc", *extra)
    )
    return groups.join(ok, on=list(by), how="left", nulls_equal=True).select(
        *by,
        pl.lit(float(tolerance)).alias("tolerance"),
        (1.0 - pl.col("relative_macs")).alias("macs_saved"),
        "relative_macs",
        "relative_acc",
        *extra,
    )


def chance_level_warning(records: ExitRecords) -> str | None:
    """A warning when the original model (final head) of ``records`` is near chance level.

    "Near" = accuracy below chance + 10 % of the way from chance to perfect
    (``1/C + 0.1·(1 − 1/C)``, 0.19 for 10 classes). On such a backbone every exit is as good
    as the final head and "MACs saved at ≤ 0.5 % drop" means nothing. None otherwise.
    """
    if records.num_samples == 0 or records.num_classes < 2:
        return None
    chance = 1.0 / records.num_classes
    accuracy = float(records.final_accuracy)
    if accuracy >= chance + 0.1 * (1.0 - chance):
        return None
    return (f"the original model is near chance level on {records.source or records.split}: "
            f"accuracy {accuracy:.3f} with {records.num_classes} classes (chance {chance:.3f}); "
            "MACs-saved figures relative to it mean nothing")


# --------------------------------------------------------------------------- configurations


def config_to_json(config: Any) -> str:
    """JSON text of a configuration (``[[exit_type, threshold], …]``) or a patience setting."""
    if isinstance(config, dict):
        return json.dumps({key: _plain(value) for key, value in config.items()})
    return json.dumps([[int(k), float(t)] for k, t in config])


def parse_config(
    text: str,
    records: ExitRecords,
    *,
    source: str | os.PathLike | None = None,
    row: int | None = None,
) -> list[list[float]] | dict:
    """Decode and check one ``config`` cell against ``records``.

    Threshold configurations must have ``P-1`` pairs ``[k, t]`` with ``-1 ≤ k < T`` and
    ``0 ≤ t ≤ 1``; patience settings are checked by their evaluator. Raises :class:`DyceError`
    naming ``source`` and ``config`` (with the row) otherwise.
    """
    field = "config" if row is None else f"config (row {row})"
    where = None if source is None else str(source)
    try:
        config = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise DyceError(f"not JSON: {text!r:.80}", path=where, field=field) from None
    if isinstance(config, dict):
        if "patience" not in config:
            raise DyceError("object without 'patience'", path=where, field=field)
        return config
    expected = records.num_positions - 1
    if not isinstance(config, list) or len(config) != expected:
        got = len(config) if isinstance(config, list) else type(config).__name__
        raise DyceError(
            f"needs {expected} [exit_type, threshold] pairs for {records.num_positions} "
            f"positions, got {got}",
            path=where, field=field,
        )
    for position, pair in enumerate(config):
        ok = (
            isinstance(pair, list) and len(pair) == 2
            and isinstance(pair[0], int) and not isinstance(pair[0], bool)
            and -1 <= pair[0] < records.num_exit_types
            and isinstance(pair[1], (int, float)) and not isinstance(pair[1], bool)
            and 0.0 <= pair[1] <= 1.0
        )
        if not ok:
            raise DyceError(
                f"position {position}: {pair!r} is not [exit_type in -1..{records.num_exit_types - 1}"
                ", threshold in [0, 1]]",
                path=where, field=field,
            )
    return config


# --------------------------------------------------------------------------- files


def search_metadata(records: ExitRecords, **options: Any) -> dict:
    """What a result table records about its search: the exit table and the search options."""
    return {
        "format_version": 1,
        "exit_types": list(records.exit_types),
        "num_positions": records.num_positions,
        "position_names": list(records.position_names),
        "num_classes": records.num_classes,
        "search_records": records.source,
        "search_model": records.model,
        "search_dataset": records.dataset,
        "search_split": records.split,
        "search_num_samples": records.num_samples,
        "records_model": records.model,
        "records_dataset": records.dataset,
        **options,
    }


def write_table(df: pl.DataFrame, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``df`` as Parquet atomically; ``metadata`` goes to key ``dyce`` as JSON."""
    extra = None if metadata is None else {METADATA_KEY: json.dumps(metadata)}
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, metadata=extra)


def write_csv(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as CSV (header, no index) atomically."""
    with atomic_path(path) as tmp:
        df.write_csv(tmp)


def read_table(path: str | os.PathLike) -> tuple[pl.DataFrame, dict]:
    """Read a result table and its ``dyce`` metadata (``{}`` when absent)."""
    try:
        df = pl.read_parquet(path)
        raw = pl.read_parquet_metadata(path)
    except FileNotFoundError:
        raise DyceError("file not found", path=path) from None
    except Exception as error:  # polars raises several types for a file that is not Parquet
        raise DyceError(f"not a readable Parquet table ({type(error).__name__})", path=path) from None
    check_finite(df, path)
    metadata: dict = {}
    if METADATA_KEY in raw:
        try:
            metadata = json.loads(raw[METADATA_KEY])
        except json.JSONDecodeError:
            raise DyceError("metadata is not JSON", path=path, field=METADATA_KEY) from None
    return df, metadata


def check_finite(df: pl.DataFrame, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`DyceError` naming the column and row of the first NaN or infinite value
    in a float column (figures such as ``relative_acc``); nulls (e.g. a peer's ``lambda``) pass.

    A NaN would otherwise sort and compare silently wrong: never the cheapest, never above a
    tolerance, yet picked by a ``first()``.
    """
    floats = [name for name, dtype in df.schema.items() if dtype.is_float()]
    if not floats:
        return
    bad = df.select(pl.any_horizontal(~pl.col(floats).is_finite()).fill_null(False))
    rows = np.flatnonzero(bad.to_series().to_numpy())
    if rows.size == 0:
        return
    row = int(rows[0])
    for name in floats:
        value = df[name][row]
        if value is not None and not math.isfinite(value):
            raise DyceError(f"row {row} is {value} ({rows.size} row(s) hold NaN or infinite "
                            "figures); figures must be finite", path=path, field=name)


def check_tolerance(tolerance: float, option: str = "tolerance") -> float:
    """``tolerance`` (a relative accuracy drop) if it is in [0, 1), else :class:`DyceError`."""
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance)
            and 0.0 <= tolerance < 1.0):
        raise DyceError(f"must be in [0, 1) (e.g. 0.005 = 0.5 %), got {tolerance}", field=option)
    return float(tolerance)


def read_tables(paths: Sequence[str | os.PathLike], required: Sequence[str] = ()) -> list[
    tuple[pl.DataFrame, dict]
]:
    """Read several result tables, each checked for the ``required`` columns."""
    tables = []
    for path in paths:
        df, metadata = read_table(path)
        _require_columns(df, tuple(required), path)
        for name in required:
            if name in FIGURE_COLUMNS and not df.schema[name].is_numeric():
                raise DyceError(f"is {df.schema[name]}, not numbers", path=path, field=name)
        tables.append((df, metadata))
    return tables


def check_exit_table(metadata: dict, records: ExitRecords, path: str | os.PathLike) -> None:
    """Raise unless ``records`` has the exit table the result table at ``path`` was searched on."""
    if not metadata:
        return
    for key, actual in (
        ("num_positions", records.num_positions),
        ("exit_types", list(records.exit_types)),
    ):
        expected = metadata.get(key)
        if expected is not None and expected != actual:
            raise DyceError(
                f"searched on records with {key} = {expected}, but "
                f"{records.source or 'the evaluation records'} have {actual}",
                path=path, field=key,
            )


# --------------------------------------------------------------------------- helpers


def _require_columns(df: pl.DataFrame, columns: Sequence[str], path: Any) -> None:
    for name in columns:
        if name not in df.columns:
            raise DyceError("column missing", path=path, field=name)


def _single_exit_type(config: Any) -> int | None:
    types = {int(k) for k, _ in config if int(k) != -1}
    return types.pop() if len(types) == 1 else None


def _ratio_json(exit_ratio: Any) -> str:
    return json.dumps([float(x) for x in np.asarray(exit_ratio, dtype=np.float64).ravel()])


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
