"""Benchmark the DyCE searches on synthetic records.

Each (samples, method) runs in a fresh worker process, so its peak RSS is its own: the worker
generates the records (``tests/synthetic.py``: ``P-1`` candidate positions × ``T`` exit types +
final head, top-1), then searches all λ ``--repeats`` times. Reported: median wall and CPU
seconds of the search, peak RSS of the worker and the RSS the records alone take. Also measures
``import dyce.search`` in a fresh interpreter (and that it pulls in neither torch nor polars).

    .venv/bin/python benchmarks/search.py --samples 100000 1280000 --methods onepass circular \\
        --repeats 3 --lambdas 0.5 1.0 101

``--dump PATH`` instead writes every result (λ, configuration, figures, cost; floats exactly)
of ``--methods`` on ``--samples`` for each of ``--seeds`` as JSON, for checking that a change to
the search changes no result: dump before and after and compare the files byte for byte
(``cmp``). Run it from a copy of the old tree for "before" (the script imports the ``dyce`` of
the tree it lies in).

    .venv/bin/python benchmarks/search.py --dump after.json --samples 20000 --seeds 0 1 2 3

``--candidates dense`` also times the dense candidates of the searched configurations
(:func:`dyce.search.candidates.densify`) on their own, after the search.

The synthetic MACs are whole numbers, whose sums are exact in any order; ``--macs-scale 1e-9``
(MACs in GMACs, as some ``macs_info`` files give them) makes them fractional, so that a change
in the order of the float operations shows up in the dump too. ``--calibration`` dumps the
calibrated searches (calibrated onepass, and circular round by round), e.g. on 3 000 samples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    """Current resident set size, GiB (from /proc; falls back to the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        return rss_gib()


def worker(args: argparse.Namespace) -> None:
    """Generate records, run one method ``repeats`` times, print one JSON line."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from dyce.evaluate.exact import evaluate_config
    from dyce.macs.info import load_macs_info
    from dyce.search import cost_scale, densify, search_configs
    from tests.synthetic import make_synthetic_macs, make_synthetic_records

    start = time.perf_counter()
    records = make_synthetic_records(args.samples, args.positions, args.exit_types,
                                     args.classes, seed=args.seed)
    macs = load_macs_info(make_synthetic_macs(args.positions, args.exit_types))
    generate_s = time.perf_counter() - start
    records_gib = current_rss_gib()
    lambdas = np.linspace(args.lambdas[0], args.lambdas[1], int(args.lambdas[2])).tolist()
    walls, cpus, results = [], [], None
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        results = search_configs(records, macs, args.method, lambdas, progress=False)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    dense_s, dense_cpu, dense_rows = [], [], len(results)
    if args.candidates == "dense" and args.method in ("onepass", "circular"):
        scale = cost_scale(records, macs)
        for _ in range(args.repeats):  # the dense candidates' extra work, timed on its own
            wall, cpu = time.perf_counter(), time.process_time()
            dense_rows = len(densify(records, macs, results, scale))
            dense_s.append(time.perf_counter() - wall)
            dense_cpu.append(time.process_time() - cpu)
    config = results[len(results) // 2].config
    evaluate_s = []
    for _ in range(5):
        wall = time.perf_counter()
        evaluate_config(records, macs, config)
        evaluate_s.append(time.perf_counter() - wall)
    best = min(results, key=lambda r: r.evaluation.relative_macs
               if r.evaluation.relative_acc >= 0.995 else float("inf"))
    print(json.dumps({
        "samples": args.samples, "method": args.method, "lambdas": len(lambdas),
        "wall_s": walls, "cpu_s": cpus, "generate_s": generate_s,
        "evaluate_s": statistics.median(evaluate_s),
        "records_gib": records_gib, "peak_gib": rss_gib(),
        "distinct_configs": len({json.dumps(r.config) for r in results}),
        "saved_at_995": 1 - best.evaluation.relative_macs,
        "dense_s": statistics.median(dense_s) if dense_s else None, "dense_rows": dense_rows,
        "dense_cpu_s": statistics.median(dense_cpu) if dense_cpu else None,
    }))


def dump(args: argparse.Namespace) -> None:
    """Write every result of ``args.methods`` for each seed as JSON (exact floats)."""
    sys.path.insert(0, str(REPO))
    import dataclasses

    import numpy as np

    from dyce.macs.info import load_macs_info
    from dyce.search import search_configs
    from tests.synthetic import make_synthetic_macs, make_synthetic_records

    lambdas = np.linspace(args.lambdas[0], args.lambdas[1], int(args.lambdas[2])).tolist()
    out = []
    for seed in args.seeds:
        records = make_synthetic_records(args.samples[0], args.positions, args.exit_types,
                                         args.classes, seed=seed)
        macs = make_synthetic_macs(args.positions, args.exit_types)
        if args.macs_scale != 1.0:
            for head in macs["head"]:
                head["macs"] = [m * args.macs_scale for m in head["macs"]]
            backbone = macs["backbone"]
            backbone["macs"] = [m * args.macs_scale for m in backbone["macs"]]
            backbone["ori_macs"] *= args.macs_scale
        macs = load_macs_info(macs)
        for method in args.methods:
            results = search_configs(records, macs, method, lambdas, progress=False,
                                     calibration=args.calibration)
            out.append({"seed": seed, "method": method, "results": [
                {"lambda": r.lambda_, "config": r.config, "cost": r.cost,
                 "evaluation": {k: v for k, v in dataclasses.asdict(r.evaluation).items()
                                if k not in ("exit_position", "prediction")}}
                for r in results]})
            print(f"seed {seed} {method}: {len({json.dumps(r.config) for r in results})} "
                  "distinct configurations", flush=True)
    Path(args.dump).write_text(json.dumps(out, indent=0) + "\n")


def import_time() -> dict:
    """Seconds to ``import dyce.search`` in a fresh interpreter (median of 5)."""
    code = ("import sys, time; t = time.perf_counter(); import dyce.search; "
            "d = time.perf_counter() - t; "
            "print(d, 'torch' in sys.modules, 'polars' in sys.modules)")
    times, heavy = [], False
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds, torch, polars = out.stdout.split()
        times.append(float(seconds))
        heavy = heavy or torch == "True" or polars == "True"
    return {"import_s": statistics.median(times), "imports_torch_or_polars": heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[100_000])
    parser.add_argument("--methods", nargs="+", default=["onepass", "circular"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lambdas", type=float, nargs=3, default=[0.5, 1.0, 101],
                        metavar=("START", "STOP", "COUNT"), help="np.linspace(START, STOP, COUNT)")
    parser.add_argument("--positions", type=int, default=9, help="P (candidates + final head)")
    parser.add_argument("--exit-types", type=int, default=5)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="with --dump: the record seeds")
    parser.add_argument("--dump", metavar="PATH", help="write every result as JSON and exit")
    parser.add_argument("--macs-scale", type=float, default=1.0,
                        help="with --dump: multiply every MACs figure (1e-9: fractional GMACs)")
    parser.add_argument("--candidates", choices=("dense", "searched"), default="searched",
                        help="dense: also time the dense candidates (dyce.search.candidates) "
                        "of the searched configurations, separately from the search")
    parser.add_argument("--calibration", action="store_true",
                        help="--dump: search with the calibrated accuracy (use few samples)")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args()
    if args.dump:
        dump(args)
        return
    if args.method:
        args.samples = args.samples[0]
        worker(args)
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.1f}")
    timing = import_time()
    print(f"import dyce.search: {timing['import_s']:.3f} s "
          f"(torch or polars imported: {timing['imports_torch_or_polars']})")
    print()
    header = ("| samples | method | λ | wall s (median) | CPU s (median) | runs | peak RSS GiB "
              "| records GiB | configs | MACs saved at rel. acc ≥ 0.995 | evaluate_config s "
              "| dense candidates wall / CPU s (rows) |")
    print(header)
    print("|---" * 12 + "|")
    for samples in args.samples:
        for method in args.methods:
            command = [sys.executable, __file__, "--method", method, "--samples", str(samples),
                       "--repeats", str(args.repeats), "--lambdas", *map(str, args.lambdas),
                       "--positions", str(args.positions), "--exit-types", str(args.exit_types),
                       "--classes", str(args.classes), "--seed", str(args.seed),
                       "--candidates", args.candidates]
            out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            if out.returncode:
                print(f"| {samples} | {method} | failed: {out.stderr.strip()[-200:]} |")
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {samples:,} | {method} | {row['lambdas']} | "
                  f"{statistics.median(row['wall_s']):.2f} | {statistics.median(row['cpu_s']):.2f} "
                  f"| {' / '.join(f'{w:.1f}' for w in row['wall_s'])} | {row['peak_gib']:.2f} | "
                  f"{row['records_gib']:.2f} | {row['distinct_configs']} | "
                  f"{row['saved_at_995']:.3f} | {row['evaluate_s']:.3f} | "
                  + ("–" if row["dense_s"] is None
                     else f"{row['dense_s']:.2f} / {row['dense_cpu_s']:.2f} ({row['dense_rows']})")
                  + " |", flush=True)


if __name__ == "__main__":
    main()
