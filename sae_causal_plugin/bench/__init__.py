"""Benchmarks, run as ``python -m sae_causal_plugin.bench NAME [options]``."""
