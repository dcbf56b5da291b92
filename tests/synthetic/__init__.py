"""Tests of sae_causal_plugin.synthetic."""
