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

import os
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from dyce.errors import DyceError
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.recorder import OutputRecorder
from dyce.report.tables import (
    SEED_COLUMNS,
    check_exit_table,
    evaluate_table,
    pareto_front,
    search_metadata,
    search_table,
    write_csv,
    write_table,
)

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
        search_range, search_step: λ grid ``numpy.arange(*search_range, search_step)``.
        save_dir, save_name: where the CSV (and Parquet) files go.
        method: ``"onepass"``, ``"circular"`` or ``"samethres"``.
        calibration: conservative per-exit accuracy during the search (small data sets).
        device: accepted for compatibility and ignored (no torch is used).
        refresh: recompute even when ``{save_dir}/{save_name}.csv`` exists; otherwise an existing
            result is read back instead of searching again.
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
    if save_name is None:
        save_name = f"{sim_index}_{method}"
    save_dir = Path(save_dir)
    front_csv = save_dir / f"{save_name}.csv"
    all_csv = save_dir / "unfiltered" / f"{save_name}.csv"
    if not refresh and front_csv.exists():
        print(f"{front_csv} exists, skip (refresh=True recomputes it)")
        return pl.read_csv(front_csv)

    from dyce.records.npz import load_any_records
    from dyce.search.candidates import check_candidate_set, search_candidates

    check_candidate_set(candidates)

    macs = load_macs_info(macs_info)
    train = load_any_records(train_record_path, macs)
    lambdas = [float(lam) for lam in np.arange(*search_range, search_step)]
    print(f"[{sim_index}] searching {len(lambdas)} λ with {method} on {train_record_path}")
    with warnings.catch_warnings():
        if max(lambdas, default=0.0) <= 1 + 1e-9:
            # np.arange(0.5, 1.01, 0.01) ends at 1.0000000000000004: not a λ above 1 in intent.
            warnings.filterwarnings("ignore", message="lambda above 1", category=UserWarning)
        results = search_candidates(train, macs, method, lambdas, candidates=candidates,
                                    normalize=True, calibration=calibration)
    searched = search_table(results, method=method, model=train.model, dataset=train.dataset)

    val = load_any_records(val_record_path, macs)
    options = {"candidates": candidates} if "candidate" in searched.columns else {}
    metadata = search_metadata(train, method=method, normalize=True, calibration=calibration,
                               sim_index=sim_index, evaluation_records=str(val_record_path),
                               **options)
    check_exit_table(metadata, val, val_record_path)
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
