"""Tests of sae_causal_plugin.multilevel and the multilevel benchmark."""
