"""Tests of sae_causal_plugin.graph (a package so its conftest gets a unique module name)."""
