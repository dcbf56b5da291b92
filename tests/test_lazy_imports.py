"""The command line starts without torch: building every parser imports none of the heavy
libraries; the package's exports still resolve on first use, and taking one registers the
architectures with SAELens (each case in a fresh interpreter, which is the only honest check)."""

import subprocess
import sys

import pytest

import sae_causal_plugin
import sae_causal_plugin.graph

HEAVY = ("torch", "sae_lens", "transformer_lens", "diffusers", "numpy", "networkx", "jaxtyping", "matplotlib")


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_building_the_cli_parsers_imports_no_heavy_library():
    out = _fresh("import sys\nfrom sae_causal_plugin.cli.main import build_parser\nbuild_parser()\n"
                 f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert out == ""


def test_help_of_every_command_exits_0_without_torch():
    code = ("import sys\nfrom sae_causal_plugin.cli.main import main\n"
            "for c in ('demo', 'train', 'graph', 'steer'):\n"
            "    try:\n        main([c, '--help'])\n    except SystemExit as e:\n        assert e.code == 0, c\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"


def test_taking_a_class_registers_the_architectures():
    out = _fresh("import sys, sae_causal_plugin\nassert 'sae_lens' not in sys.modules\n"
                 "from sae_causal_plugin import HierarchicalTopKTrainingSAEConfig\n"
                 "from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY as R\n"
                 "print(R['hierarchical_topk'][1] is HierarchicalTopKTrainingSAEConfig)")
    assert out == "True"


def test_importing_after_sae_lens_registers_at_once():
    out = _fresh("import sae_lens, sae_causal_plugin\nfrom sae_lens.registry import SAE_CLASS_REGISTRY as R\n"
                 "print(sorted(n for n in R if n.startswith('hierarchical_')))")
    assert out == "['hierarchical_batchtopk', 'hierarchical_jumprelu', 'hierarchical_topk']"


@pytest.mark.parametrize("package", [sae_causal_plugin, sae_causal_plugin.graph])
def test_every_export_resolves_and_is_listed(package):
    for name in package.__all__:
        assert getattr(package, name).__name__ == name
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018


def test_submodules_are_attributes():
    assert sae_causal_plugin.graph.thresholds.DEFAULT_MIN_SUPPORT == 20
    assert sae_causal_plugin.steering.__name__ == "sae_causal_plugin.steering"
