"""Stage 6, evaluate: exact figures of a configuration on records, and the peer strategies.

- :mod:`dyce.evaluate.exact`: the exact evaluator (accuracy, MACs, exit ratios) and its
  per-sample brute force.
- :mod:`dyce.evaluate.strategies`: peer strategies ``global_threshold``, ``msdnet``, ``patience``.
"""

from dyce.evaluate.exact import (
    Evaluation,
    brute_force_evaluate,
    calibrated_accuracy,
    check_config,
    evaluate_config,
    position_macs,
)
from dyce.evaluate.strategies import (
    PEER_METHODS,
    StrategyResult,
    evaluate_any,
    global_threshold,
    msdnet,
    patience,
    run_strategy,
)

__all__ = [
    "PEER_METHODS",
    "Evaluation",
    "StrategyResult",
    "brute_force_evaluate",
    "calibrated_accuracy",
    "check_config",
    "evaluate_any",
    "evaluate_config",
    "global_threshold",
    "msdnet",
    "patience",
    "position_macs",
    "run_strategy",
]
