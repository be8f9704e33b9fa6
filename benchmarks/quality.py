"""Quality of the fronts on unseen data: DyCE methods against the threshold peers.

For every search-split size and seed, synthetic records are generated (:func:`write_problem`:
``search``, ``calib`` and ``val`` splits in the project's Parquet record format, and a
``macs_info.json``), every method is searched on ``search``, and two figures are reported:

(a) **validation-picked**: MACs saved by the cheapest row whose validation relative accuracy
    is ≥ 1 − tolerance (the paper's figure; every method's whole table is evaluated on
    ``val``);
(b) **chosen without validation**: the configuration ``dyce select``'s risk control picks on
    the ``calib`` split (:func:`risk_choice`; its relative accuracy drop is ≤ tolerance with
    probability ≥ 1 − delta), with its validation MACs saved, validation drop and whether it
    met the tolerance there (nothing passing counts as the original model: 0 saved, met).

Methods: ``onepass`` and ``circular`` (dense candidates, the default), ``onepass-searched``
(the original one row per λ: the ``searched`` rows of the same table), ``global_threshold``
and ``msdnet`` (every exit type, their default grids). Every figure is an exact evaluation
(:func:`dyce.evaluate.evaluate_config`).

    .venv/bin/python benchmarks/quality.py                     # the table in docs/benchmarks.md
    .venv/bin/python benchmarks/quality.py --sizes 1000 --seeds 2 --variant poor_calibration

The generator (:func:`make_split`) draws one latent difficulty per sample shared by all exits
(a Gaussian copula), exit accuracies rising with depth and head size, and a top-1 confidence
that grows with the margin between an exit's skill and the sample's difficulty plus noise;
``--variant`` changes the calibration, the accuracy curve, the class count, the head costs or
the correlation between exits (:data:`VARIANTS`). ``--variant softmax`` draws the records from
softmax logits instead, with exits calibrated differently (:func:`make_softmax_split`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXIT_TYPES = ("mlp1x1000", "mlp3x500", "mlp3x1000", "mlp5x500", "mlp5x1000")


@dataclass(frozen=True)
class Generator:
    """Parameters of the synthetic records.

    ``final_accuracy``: the final head's accuracy; exit ``(p, k)`` has accuracy
    ``final_accuracy · (first + (0.92 − first)·depth^power) · (0.92 + 0.08·size)`` with
    ``depth = (p+1)/P`` and ``size = k/(T−1)``. ``rho``: correlation of an exit's score with
    the shared difficulty. The top-1 confidence is ``1/C + (1 − 1/C)·sigmoid(slope·margin +
    bias·skill + noise·ε)``. ``head_cost``: head ``k`` at position ``p`` costs
    ``head_cost·(k+1)·(p+1)`` of the original model.

    ``family="softmax"`` draws the records another way (:func:`make_softmax_split`): ``C``
    Gaussian logits per exit, a share ``logit_rho`` of their noise common to all exits, the
    true class raised by a strength growing with depth and head size (scaled by the sample's
    difficulty), and a per-exit temperature ``exp(N(0, temperature_sd))`` fixed across splits,
    so exits differ in calibration as trained heads do; prediction and confidence are the
    softmax's arg max and max.
    """

    num_positions: int = 9
    num_exit_types: int = 5
    num_classes: int = 100
    final_accuracy: float = 0.8
    rho: float = 0.9
    first: float = 0.3
    power: float = 0.8
    slope: float = 1.6
    bias: float = 0.6
    noise: float = 0.5
    head_cost: float = 0.0005
    family: str = "copula"
    logit_rho: float = 0.6
    temperature_sd: float = 0.3


VARIANTS = {
    "base": Generator(),
    "poor_calibration": Generator(slope=1.0, noise=1.0),
    "overconfident": Generator(bias=1.5, slope=1.2),
    "flat_accuracy": Generator(first=0.6, power=0.5),
    "steep_accuracy": Generator(first=0.15, power=1.5),
    "10_classes": Generator(num_classes=10, final_accuracy=0.93),
    "1000_classes": Generator(num_classes=1000, final_accuracy=0.76),
    "costly_heads": Generator(head_cost=0.003),
    "weakly_correlated": Generator(rho=0.7),
    "softmax": Generator(family="softmax"),
    "softmax_calibrated": Generator(family="softmax", temperature_sd=0.0),
}


def exit_accuracies(gen: Generator) -> np.ndarray:
    """float64 ``(E,)``: every exit's accuracy, position-major, final head last."""
    depth = np.arange(1, gen.num_positions) / gen.num_positions
    size = np.arange(gen.num_exit_types) / max(gen.num_exit_types - 1, 1)
    relative = (gen.first + (0.92 - gen.first) * depth[:, None] ** gen.power) \
        * (0.92 + 0.08 * size[None, :])
    return np.append(gen.final_accuracy * relative.ravel(), gen.final_accuracy)


def make_split(gen: Generator, num_samples: int, seed: int, split: str):
    """:class:`dyce.records.ExitRecords` of ``num_samples`` samples (top-1, float32)."""
    if gen.family == "softmax":
        return make_softmax_split(gen, num_samples, seed, split)
    from scipy.special import ndtri

    from dyce.records.format import pred_dtype

    rng = np.random.default_rng(seed)
    accuracy = exit_accuracies(gen)
    labels = rng.integers(0, gen.num_classes, num_samples)
    difficulty = rng.standard_normal(num_samples)
    preds = np.empty((accuracy.size, num_samples, 1), dtype=pred_dtype(gen.num_classes))
    confs = np.empty((accuracy.size, num_samples, 1), dtype=np.float32)
    floor = 1.0 / gen.num_classes
    for e, acc in enumerate(accuracy):
        skill = ndtri(acc)
        score = gen.rho * difficulty + math.sqrt(1 - gen.rho**2) * rng.standard_normal(num_samples)
        margin = skill - score  # > 0 exactly when the exit is right
        wrong = (labels + rng.integers(1, gen.num_classes, num_samples)) % gen.num_classes
        logit = gen.slope * margin + gen.bias * skill + gen.noise * rng.standard_normal(num_samples)
        confs[e, :, 0] = np.minimum(floor + (1 - floor) / (1 + np.exp(-logit)), 0.9999)
        preds[e, :, 0] = np.where(margin > 0, labels, wrong)
    return synthetic_records(gen, labels, preds, confs, split)


def synthetic_records(gen: Generator, labels, preds, confs, split: str):
    """:class:`dyce.records.ExitRecords` of the generated arrays (``preds``/``confs`` ``(E, N, 1)``)."""
    from dyce.records.format import ExitRecords

    return ExitRecords(labels=labels, preds=preds, confs=confs,
                       exit_types=EXIT_TYPES[:gen.num_exit_types],
                       num_positions=gen.num_positions, num_classes=gen.num_classes,
                       model="synthetic", dataset="synthetic", split=split)


def make_softmax_split(gen: Generator, num_samples: int, seed: int, split: str):
    """:class:`dyce.records.ExitRecords` from softmax logits (see :class:`Generator`)."""
    from dyce.records.format import pred_dtype

    rng = np.random.default_rng(seed)
    classes = gen.num_classes
    labels = rng.integers(0, classes, num_samples)
    difficulty = rng.standard_normal(num_samples).astype(np.float32)
    common = rng.standard_normal((num_samples, classes), dtype=np.float32)
    depth = np.repeat(np.arange(1, gen.num_positions) / gen.num_positions, gen.num_exit_types)
    size = np.tile(np.arange(gen.num_exit_types) / max(gen.num_exit_types - 1, 1),
                   gen.num_positions - 1)
    strength = np.append(1.0 + 3.2 * depth**0.9 * (0.85 + 0.15 * size), 4.4)
    temperature = np.exp(np.random.default_rng(12345).normal(0.0, gen.temperature_sd,
                                                             strength.size))
    temperature[-1] = 1.0  # the final head's calibration is the reference
    preds = np.empty((strength.size, num_samples, 1), dtype=pred_dtype(classes))
    confs = np.empty((strength.size, num_samples, 1), dtype=np.float32)
    rows = np.arange(num_samples)
    for e in range(strength.size):
        logits = math.sqrt(gen.logit_rho) * common + math.sqrt(1 - gen.logit_rho) \
            * rng.standard_normal((num_samples, classes), dtype=np.float32)
        logits[rows, labels] += (strength[e] * (1 - 0.35 * difficulty)).astype(np.float32)
        logits *= np.float32(1.6 / temperature[e])
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        preds[e, :, 0] = probs.argmax(axis=1)
        confs[e, :, 0] = probs.max(axis=1)
    return synthetic_records(gen, labels, preds, confs, split)


def make_macs(gen: Generator) -> dict:
    """``macs_info`` (the seed JSON format): ResNet-50-like backbone, heads per ``head_cost``."""
    ori = 4_100_000_000
    depth = np.arange(1, gen.num_positions + 1) / gen.num_positions
    backbone = [int(v) for v in np.round(ori * depth**1.1)]
    backbone[-1] = ori
    heads = [{"name": EXIT_TYPES[k], "params": [],
              "macs": [int(ori * gen.head_cost * (k + 1) * (p + 1))
                       for p in range(gen.num_positions - 1)] + [0]}
             for k in range(gen.num_exit_types)]
    return {"head": heads, "backbone": {"name": "synthetic", "macs": backbone, "ori_macs": ori}}


def write_problem(directory: Path, gen: Generator, sizes: dict[str, int], seed: int) -> dict:
    """Write ``{split}.parquet`` for each of ``sizes`` and ``macs_info.json`` under ``directory``.

    Each split has its own random stream (same distribution, independent samples).
    """
    from dyce.io import write_json
    from dyce.records.format import write_records

    paths = {}
    for index, (split, size) in enumerate(sizes.items()):
        paths[split] = directory / f"{split}.parquet"
        write_records(paths[split], make_split(gen, size, seed * 1000 + index, split))
    paths["macs"] = directory / "macs_info.json"
    write_json(paths["macs"], make_macs(gen))
    return paths


# --------------------------------------------------------------------------- one run


def search_tables(records, macs, lambdas) -> dict:
    """Search table (polars) per method."""
    from dyce.evaluate.strategies import run_strategy
    from dyce.report.tables import search_table
    from dyce.search.candidates import search_candidates

    tables = {}
    for method in ("onepass", "circular"):
        results = search_candidates(records, macs, method, lambdas, progress=False)
        tables[method] = search_table(results, method=method)
    import polars as pl

    tables["onepass-searched"] = tables["onepass"].filter(pl.col("candidate") == "searched")
    for method in ("global_threshold", "msdnet"):
        tables[method] = search_table(run_strategy(method, records, macs, progress=False),
                                      method=method)
    return tables


def risk_choice(table, calib, macs, tolerance: float, delta: float, *, search=None,
                order: str = "risk"):
    """The configuration ``dyce select``'s risk control picks on ``calib`` among the method's
    distinct configurations (None: nothing passed, the original model).

    :func:`dyce.runtime.selection.select_operating_point`: Learn-then-Test with a
    Clopper–Pearson bound (``loss="auto"``). ``order="risk"`` (``dyce select``'s default; needs
    the ``search`` records) tests the search split's (loss, MACs) staircase in loss order;
    ``order="macs"`` from the most to the least expensive configuration on the search figures.
    """
    from dyce.runtime.selection import Candidate, select_operating_point, with_search_losses

    distinct = table.unique(subset="config", keep="first", maintain_order=True)
    candidates = [Candidate(json.loads(row["config"]), float(row["relative_macs_tr"]), row)
                  for row in distinct.iter_rows(named=True)]
    if order == "risk":
        candidates = with_search_losses(candidates, search, macs)
    choice = select_operating_point(candidates, calib, macs, tolerance=tolerance, delta=delta,
                                    order=order)
    return choice.config if choice.passed else None


def run_once(gen: Generator, size: int, seed: int, *, val_size: int, calib_size: int | None,
             lambdas: list[float], tolerance: float, delta: float,
             order: str = "risk") -> dict:
    """Figures of every method for one (size, seed)."""
    from dyce.evaluate.exact import evaluate_config
    from dyce.macs.info import load_macs_info
    from dyce.records.format import read_records
    from dyce.report.tables import evaluate_table, savings_at_tolerance

    sizes = {"search": size, "calib": calib_size or size, "val": val_size}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_problem(Path(tmp), gen, sizes, seed)
        records = {split: read_records(paths[split]) for split in sizes}
        macs = load_macs_info(paths["macs"])
    out = {}
    tables = search_tables(records["search"], macs, lambdas)
    for method, table in tables.items():
        evaluated = evaluate_table(table, records["val"], macs)
        picked = savings_at_tolerance(evaluated, tolerance)
        config = risk_choice(table, records["calib"], macs, tolerance, delta,
                             search=records["search"], order=order)
        if config is None:
            saved, drop = 0.0, 0.0
        else:
            val = evaluate_config(records["val"], macs, config)
            saved, drop = 1.0 - val.relative_macs, 1.0 - val.relative_acc
        out[method] = {
            "val_picked": 0.0 if math.isnan(picked) else picked,
            "rows": table.height,
            "chosen_saved": saved,
            "chosen_drop": drop,
            "chosen_met": drop <= tolerance + 1e-12,
        }
    return out


# --------------------------------------------------------------------------- report


def mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def report(results: dict, sizes: list[int], seeds: int) -> str:
    methods = list(results[sizes[0]][0])
    head = "| method | " + " | ".join(f"{s:,}" for s in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)
    lines = ["(a) validation-picked MACs saved at ≤ tolerance drop, % (mean ± sd over "
             f"{seeds} seeds)", "", head, rule]
    for method in methods:
        cells = [mean_sd([r[method]["val_picked"] for r in results[s]]) for s in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "(b) chosen on calib without validation: validation MACs saved, % / "
              "validation drop, % / seeds meeting the tolerance", "", head, rule]
    for method in methods:
        cells = []
        for s in sizes:
            runs = results[s]
            met = sum(r[method]["chosen_met"] for r in runs)
            cells.append(f"{mean_sd([r[method]['chosen_saved'] for r in runs])} / "
                         f"{100 * statistics.fmean(r[method]['chosen_drop'] for r in runs):.2f}"
                         f" / {met}/{len(runs)}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "rows per table (mean): " + ", ".join(
        f"{m} {statistics.fmean(r[m]['rows'] for s in sizes for r in results[s]):.0f}"
        for m in methods)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000, 10000, 50000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val-size", type=int, default=20000)
    parser.add_argument("--calib-size", type=int, default=None,
                        help="calib samples (default: the search-split size)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="base")
    parser.add_argument("--num-classes", type=int, help="override the variant's class count")
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--order", choices=("risk", "macs"), default="risk",
                        help="testing order of view (b) (default: dyce select's)")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    gen = VARIANTS[args.variant]
    if args.num_classes:
        gen = replace(gen, num_classes=args.num_classes)
    lambdas = [float(v) for v in np.round(np.arange(0.5, 1.0001, 0.01), 2)]
    results: dict[int, list] = {}
    started = time.perf_counter()
    for size in args.sizes:
        results[size] = []
        for seed in range(args.seeds):
            results[size].append(run_once(gen, size, seed, val_size=args.val_size,
                                          calib_size=args.calib_size, lambdas=lambdas,
                                          tolerance=args.tolerance, delta=args.delta,
                                          order=args.order))
            print(f"size {size} seed {seed}: " + ", ".join(
                f"{m} {100 * r['val_picked']:.1f}" for m, r in results[size][-1].items()),
                file=sys.stderr, flush=True)
    print(f"variant {args.variant}, val {args.val_size}, tolerance {args.tolerance}, "
          f"delta {args.delta}, order {args.order}, {time.perf_counter() - started:.0f} s\n")
    print(report(results, args.sizes, args.seeds))
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
