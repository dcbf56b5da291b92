"""The demo report: a :class:`~sae_causal_plugin.worlds.run.WorldRun` as a folder with
``index.html`` (rendered from a jinja2 template: graph pictures linked at full size, every metric with a
one-line description and its target, the settings apart, the command that reproduces the report,
steering before / after),
``concept_graph.png``, ``concept_graph.json``, ``metrics.json`` and the true graph beside them.
"""

from sae_causal_plugin.report.targets import Target, targets_for
from sae_causal_plugin.report.writer import REPORT_FILES, write_report

__all__ = ["REPORT_FILES", "Target", "targets_for", "write_report"]
