"""Seed API path ``dyce.config_search.search_and_eval`` (see :mod:`dyce.compat`)."""

from dyce.compat import search_and_eval

__all__ = ["search_and_eval"]
