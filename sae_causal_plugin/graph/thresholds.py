"""Documented defaults of :func:`~sae_causal_plugin.graph.recover_concept_graph` (plain numbers, no
torch: the command line shows them in ``--help`` without importing the graph code)."""

DEFAULT_MIN_CONDITIONAL = 0.9
DEFAULT_MIN_SUPPORT = 20
DEFAULT_MIN_LIFT = 1.5
DEFAULT_EXPLAIN_MARGIN = 0.1
