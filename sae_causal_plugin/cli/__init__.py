"""Command-line interface ``sae-causal`` (also ``python -m sae_causal_plugin``).

One module per command (:mod:`.demo`, :mod:`.train`, :mod:`.graph`, :mod:`.steer`), each with
``add_parser(subparsers)`` and ``run(args) -> int``; :mod:`.main` dispatches.  Shared glue:
:mod:`.config` (train config files), :mod:`.models` (``--model``), :mod:`.data` (datasets and
activation files), :mod:`.sae_dirs` (SAE folders).
"""
