"""The randomisation sanity check (Adebayo et al., 2018): maps of a faithful method change when the model does."""
from __future__ import annotations

import torch

from .result import MetricResult, spearman


def sanity_check(make_cam, model, images, prompts, steps: int = 3, seed: int = 0) -> MetricResult:
    """Cascading randomisation (Adebayo et al., 2018): re-initialise the image tower from the top, one block
    more at each step, and recompute the saliency with ``make_cam(randomised_model)``. Values: the mean Spearman
    rank correlation (ties at average rank) of each step's maps with the original ones (should fall well below 1;
    maps that are constant at either step are left out of the mean)."""
    base = make_cam(model)(images, prompts).saliency
    wrapper = model.clone()
    gen = torch.Generator().manual_seed(seed)
    names, corrs = [], []
    for name, params in wrapper.tower.blocks_from_top()[:steps]:   # the tower adapter knows the family's blocks
        for p in params:
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        sal = make_cam(wrapper)(images, prompts).saliency
        names.append(name)
        corrs.append(spearman(base.flatten(-2), sal.flatten(-2)).nanmean())
    return MetricResult("sanity_check_spearman", torch.stack(corrs), {"randomised_from_top": names, "seed": seed})
