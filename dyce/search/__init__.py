"""Stage 5, search: the DyCE configuration search for every accuracy/compute trade-off λ.

For a trade-off weight λ the search minimises ``λ·(1 − acc) + (1 − λ)·macs`` (normalised, see
:mod:`dyce.search.cost`) over *configurations*: ``P-1`` pairs ``[exit_type, threshold]``, one
per candidate position (``exit_type`` ``-1``: no exit there). Thresholds are exact optima, and
:func:`dyce.evaluate.evaluate_config` of a returned configuration reproduces the searched
partition exactly. Exact semantics and every tie rule: ``docs/semantics.md``.

Modules, in the order they build on each other:

- :mod:`~dyce.search.cost`: the cost and its scale (normalisation).
- :mod:`~dyce.search.cuts`: the exact block scan: the cheapest cut of one exit for many λ.
- :mod:`~dyce.search.context`: the shared context of one search (every speed device).
- :mod:`~dyce.search.calibrated`: the calibrated variant's curves.
- :mod:`~dyce.search.curves`: one exit type's curve, plain or calibrated.
- :mod:`~dyce.search.fates`: the per-sample fates of one full configuration.
- :mod:`~dyce.search.onepass`: ``onepass``.
- :mod:`~dyce.search.circular`: ``circular``, fast (incremental, depth first).
- :mod:`~dyce.search.circular_reference`: ``circular`` round by round (the reference; also the
  calibrated circular).
- :mod:`~dyce.search.methods`: :func:`search_configs` by method name, and ``samethres``.
- :mod:`~dyce.search.candidates`: each searched configuration's neighbours (raised and shared
  thresholds), the default candidate set of the DyCE fronts.

Glossary
--------
position
    A candidate exit position ``p`` (``0 … P-2``); ``P-1`` is the final head.
exit type
    One of the ``T`` exit heads trained at every position (``k``).
sorted order
    One exit's samples in descending order of its top-1 confidence.
cut
    Cut ``j`` of an exit lets the first ``j`` arriving samples of its sorted order leave; its
    threshold is the midpoint between the confidences around the cut.
arriving
    A sample arrives at ``p`` when no enabled exit before ``p`` lets it leave.
rest fate
    Where an arriving sample would leave if position ``p`` had no exit: the first later enabled
    exit that lets it leave, else the final head; and whether it is right there.
rest code
    The rest fate as one integer, ``2·position + right`` (``-1``: does not arrive at ``p``).
tally
    The number of samples per rest code at a position (``bincount`` of the codes + 1).
situation
    What position ``p`` sees with every other position fixed
    (:class:`~dyce.search.context.Situation`):
    who arrives, their rest codes or tally, the samples that left before ``p`` and the MACs;
    independent of λ, so one situation serves every λ.
head MACs before
    ``head_macs_before``: the MACs of the enabled exit heads before ``p``, which every sample
    reaching ``p`` has paid.
curve
    Every cut of one exit type in one situation, with its accuracy and MACs
    (:class:`~dyce.search.cuts.BlockCurve`, or :class:`~dyce.search.calibrated.CalibratedCurve`
    when calibrated); a :class:`~dyce.search.cuts.CurveSet` holds all exit types at once.
option
    A candidate change at a position: an exit type with its cheapest cut, or "none".
decision prefix
    ``onepass``: the decisions for positions ``0 … p-1``; the λs that took them share the rest.
fates
    ``circular``: which samples leave where under a full configuration, and the rest codes of
    every position (:class:`~dyce.search.fates.ConfigurationFates`).
"""

from dyce.search.candidates import (
    CANDIDATE_SETS,
    CandidateResult,
    densify,
    search_candidates,
)
from dyce.search.context import SearchResult
from dyce.search.cost import (
    CostScale,
    check_lambdas,
    cost,
    cost_scale,
    empty_config,
    evaluation_cost,
)
from dyce.search.methods import METHODS, samethres, search_configs

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
    "samethres",
    "search_candidates",
    "search_configs",
]
