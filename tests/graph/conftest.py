"""Shared fixtures: tiny SAEs and data with exactly known hierarchies."""

from __future__ import annotations

import pytest
import torch
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.standard_sae import StandardSAE
from sae_lens.synthetic import (
    ConstantFiringProbabilityConfig,
    FeatureDictionary,
    HierarchyConfig,
    SyntheticModel,
    SyntheticModelConfig,
    init_sae_to_match_feature_dict,
)

from tests.helpers import identity_sae

# Hand-built hierarchy on 7 latents (edges child -> parent):
#   1 -> 0, 2 -> 0, 3 -> 1, 4 -> 2; 5 independent; 6 dense (fires ~97% of the time).
HAND_EDGES = {(1, 0), (2, 0), (3, 1), (4, 2)}
HAND_TRANSITIVE = {(3, 0), (4, 0)}


def hand_hierarchy_data(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Binary activations where children fire only when their parent fires."""
    g = torch.Generator().manual_seed(seed)

    def bern(p: float) -> torch.Tensor:
        return torch.rand(n, generator=g) < p

    a = bern(0.5)
    b = a & bern(0.5)
    c = a & bern(0.4)
    d = b & bern(0.5)
    e = c & bern(0.6)
    f = bern(0.3)
    dense = bern(0.97)
    return torch.stack([a, b, c, d, e, f, dense], dim=1).float()


@pytest.fixture
def hand_sae() -> StandardSAE:
    return identity_sae(7)


@pytest.fixture
def hand_data() -> torch.Tensor:
    return hand_hierarchy_data()


def _orthonormal(fd: FeatureDictionary) -> None:
    q, _ = torch.linalg.qr(torch.randn(fd.hidden_dim, fd.num_features, generator=torch.Generator().manual_seed(1)))
    fd.feature_vectors.data = q.T.contiguous()


@pytest.fixture
def synthetic_setup() -> tuple[SyntheticModel, JumpReLUSAE]:
    """14-feature hierarchy (2 roots x 2 children x 2 grandchildren) + 2 free features,
    orthonormal feature vectors, and a JumpReLU SAE initialised to the true features."""
    cfg = SyntheticModelConfig(
        num_features=16,
        hidden_dim=32,
        firing_probability=ConstantFiringProbabilityConfig(probability=0.4),
        hierarchy=HierarchyConfig(total_root_nodes=2, branching_factor=2, max_depth=2),
        seed=0,
    )
    torch.manual_seed(0)
    fd = FeatureDictionary(16, 32, bias=1.0, initializer=_orthonormal, seed=0)
    model = SyntheticModel(cfg, feature_dict=fd)
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=32, d_sae=16))
    init_sae_to_match_feature_dict(sae, model.feature_dict)
    with torch.no_grad():
        sae.b_dec.copy_(model.feature_dict.bias)  # the synthetic model adds a bias
        sae.b_enc.zero_()
        sae.threshold.fill_(0.5)
    return model, sae
