"""The seed API: ``search_and_eval`` as in the original DyCE release, and ``OutputRecorder``.

The original README imports them as ``dyce.config_search.search_and_eval`` and
``dyce.utils.OutputRecorder``; those thin modules re-export them from here.

    from dyce.config_search import search_and_eval
    search_and_eval(sim_index="dyce_resnet50", macs_info=macs_info,
                    train_record_path="train.npz", val_record_path="val.npz")

Searches configurations for every λ on the train record (normalised cost, as the original sweep),
evaluates them on the val record and writes ``{save_dir}/{save_name}.csv`` (the filtered front)
and ``{save_dir}/unfiltered/{save_name}.csv`` (every configuration), with a Parquet copy beside
each. Unlike the original it imports no torch (``device`` is accepted and ignored), loads records
without pickle, and its figures equal a per-sample brute force.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl

from dyce.errors import DyceError
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.recorder import OutputRecorder
from dyce.report.tables import (
    SEED_COLUMNS,
    chance_level_warning,
    evaluate_table,
    pareto_front,
    read_table,
    search_metadata,
    search_table,
    write_csv,
    write_table,
)
from dyce.search.lambda_grid import lambda_range

__all__ = ["OutputRecorder", "search_and_eval"]

SEED_METHODS = ("onepass", "circular", "samethres")


def search_and_eval(
    sim_index: str,
    macs_info: str | os.PathLike | dict | MacsInfo,
    train_record_path: str | os.PathLike,
    val_record_path: str | os.PathLike,
    search_range: list[float] = [0.5, 1.01],  # noqa: B006 - the original signature, never mutated
    search_step: float = 0.01,
    save_dir: str | os.PathLike = "./eval/sim_results/",
    save_name: str | None = None,
    method: str = "onepass",
    calibration: bool = False,
    device: str = "cuda",
    refresh: bool = False,
    candidates: str = "dense",
) -> pl.DataFrame:
    """Search on the train record for every λ, evaluate on the val record, save the results.

    Args:
        sim_index: name of this run (default ``save_name`` is ``f"{sim_index}_{method}"``).
        macs_info: path of the ``macs_info`` JSON file, or the dictionary.
        train_record_path, val_record_path: ``.npz`` records of ``OutputRecorder`` (or Parquet).
        search_range, search_step: λ grid ``start, start + step, …`` below ``stop`` (the rule of
            ``numpy.arange``, in exact decimal steps: the default ends at exactly 1.0).
        save_dir, save_name: where the CSV (and Parquet) files go.
        method: ``"onepass"``, ``"circular"`` or ``"samethres"``.
        calibration: conservative per-exit accuracy during the search (small data sets).
        device: accepted for compatibility and ignored (no torch is used).
        refresh: recompute even when a saved result exists. Otherwise a saved result is read
            back instead of searching again only when it was computed from the same inputs
            (both records' bytes, the macs_info, method, calibration, candidates and λ grid)
            and reads back whole; anything else is searched again.
        candidates: ``"dense"`` (default): onepass and circular also write each searched
            configuration's neighbours (:mod:`dyce.search.candidates`), named in a
            ``candidate`` column after ``lambda``; ``"searched"``: one row per λ, as the
            original release.

    Returns:
        The filtered front (columns ``relative_macs, raw_macs, relative_acc, raw_acc,
        relative_macs_tr, raw_macs_tr, relative_acc_tr, raw_acc_tr, config, exit_ratio, lambda``,
        then ``candidate`` for the dense candidates; MACs per sample, ``config`` and ``exit_ratio`` as JSON text), sorted by ``relative_macs``.
    """
    del device  # no torch here
    if method not in SEED_METHODS:
        raise DyceError(f"unknown method {method!r}; choose from {', '.join(SEED_METHODS)}",
                        field="method")
    if not isinstance(search_range, (list, tuple)) or len(search_range) != 2:
        raise DyceError(f"{search_range!r} is not [start, stop]", field="search_range")
    # numpy.arange's rule (stop excluded), with exact decimal steps: [0.5, 1.01] ends at 1.0.
    lambdas = lambda_range(search_range[0], search_range[1], search_step, include_stop=False,
                           field="search_range/search_step")
    if not lambdas:
        raise DyceError(f"{search_range} with step {search_step} holds no λ", field="search_range")
    if save_name is None:
        save_name = f"{sim_index}_{method}"
    save_dir = Path(save_dir)
    front_csv = save_dir / f"{save_name}.csv"
    all_csv = save_dir / "unfiltered" / f"{save_name}.csv"

    from dyce.records.npz import load_any_records
    from dyce.search.candidates import check_candidate_set, search_candidates

    check_candidate_set(candidates)

    macs = load_macs_info(macs_info)
    key = cache_key(macs, train_record_path, val_record_path, method=method,
                    calibration=calibration, candidates=candidates, lambdas=lambdas)
    if not refresh:
        cached = read_cached_front(front_csv, key)
        if cached is not None:
            print(f"{front_csv} holds this search's result, skip (refresh=True recomputes it)")
            return cached
    train = load_any_records(train_record_path, macs)
    # The val record is read and checked against the macs_info before the search, not after it.
    val = load_any_records(val_record_path, macs)
    for records in (train, val):
        warning = chance_level_warning(records)
        if warning is not None:
            print(f"[{sim_index}] WARNING: {warning}")
    print(f"[{sim_index}] searching {len(lambdas)} λ with {method} on {train_record_path}")
    results = search_candidates(train, macs, method, lambdas, candidates=candidates,
                                normalize=True, calibration=calibration)
    searched = search_table(results, method=method, model=train.model, dataset=train.dataset)

    options = {"candidates": candidates} if "candidate" in searched.columns else {}
    metadata = search_metadata(train, method=method, normalize=True, calibration=calibration,
                               sim_index=sim_index, evaluation_records=str(val_record_path),
                               cache_key=key, **options)
    print(f"[{sim_index}] evaluating on {val_record_path}")
    evaluated = evaluate_table(searched, val, macs)
    columns = [*SEED_COLUMNS, *(["candidate"] if "candidate" in evaluated.columns else [])]
    unfiltered = evaluated.sort("relative_macs", maintain_order=True).select(columns)
    front = pareto_front(unfiltered)

    for table, csv_path in ((unfiltered, all_csv), (front, front_csv)):
        write_table(table, csv_path.with_suffix(".parquet"), metadata)
        write_csv(table, csv_path)
    print(f"[{sim_index}] saved {front_csv} ({front.height} of {unfiltered.height} configurations)")
    return front


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    where = Path(path)
    if not where.is_file():
        raise DyceError("file not found", path=where)
    digest = hashlib.sha256()
    with open(where, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(macs: MacsInfo, train_record_path: str | os.PathLike,
              val_record_path: str | os.PathLike, **settings: object) -> str:
    """What a saved result depends on: both records' bytes, the macs_info's content and the
    search settings (method, calibration, λ grid), as one SHA-256."""
    description = {
        "train": file_digest(train_record_path),
        "val": file_digest(val_record_path),
        "macs_info": macs.raw,
        **settings,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def read_cached_front(front_csv: Path, key: str) -> pl.DataFrame | None:
    """The saved front when it exists, was computed from the same inputs (``key``) and reads
    back whole (its Parquet copy with finite figures, and a CSV with the same rows); else None,
    with a line saying why, so that the search runs again."""
    parquet = front_csv.with_suffix(".parquet")
    if not front_csv.exists():
        return None
    reason = None
    try:
        table, metadata = read_table(parquet)
        if metadata.get("cache_key") != key:
            reason = "was computed from other records, macs_info or settings"
        elif list(table.columns)[:len(SEED_COLUMNS)] != list(SEED_COLUMNS) or table.height == 0:
            reason = "is not a complete search result"
        else:
            csv = pl.read_csv(front_csv)
            if list(csv.columns) != list(table.columns) or csv.height != table.height:
                reason = "CSV does not match its Parquet copy"
    except (DyceError, pl.exceptions.PolarsError, OSError) as error:
        reason = f"cannot be read back ({error})"
    if reason is not None:
        print(f"{front_csv} {reason}; searching again")
        return None
    return table
