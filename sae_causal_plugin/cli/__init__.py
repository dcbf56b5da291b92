"""Command-line interface: ``sae-causal`` (also ``python -m sae_causal_plugin``)."""
