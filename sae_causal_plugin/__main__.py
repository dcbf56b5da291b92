"""``python -m sae_causal_plugin``: the ``sae-causal`` command line."""

import sys

from sae_causal_plugin.cli.main import main

sys.exit(main())
