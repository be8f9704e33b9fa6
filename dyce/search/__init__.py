"""Stage 5, search: the DyCE configuration search for every accuracy/compute trade-off λ.

- :mod:`dyce.search.searcher`: cost, normalisation, ``search_configs`` (``onepass``,
  ``samethres``, the calibrated variant) and the result type.
- :mod:`dyce.search.circular`: ``circular`` on incrementally updated block curves.
- :mod:`dyce.search.cuts`: the exact block-pruned scan of each exit's sorted order.
- :mod:`dyce.search.candidates`: each searched configuration's neighbours (raised and shared
  thresholds), the default candidate set of the DyCE fronts.
"""

from dyce.search.candidates import (
    CANDIDATE_SETS,
    CandidateResult,
    densify,
    search_candidates,
)
from dyce.search.searcher import (
    METHODS,
    CostScale,
    SearchResult,
    check_lambdas,
    cost,
    cost_scale,
    empty_config,
    evaluation_cost,
    search_configs,
)

__all__ = [
    "CANDIDATE_SETS",
    "CandidateResult",
    "METHODS",
    "CostScale",
    "SearchResult",
    "check_lambdas",
    "cost",
    "cost_scale",
    "densify",
    "empty_config",
    "evaluation_cost",
    "search_candidates",
    "search_configs",
]
