"""Tests of sae_causal_plugin.diffusion (a package so its conftest gets a unique module name)."""
