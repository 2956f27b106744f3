"""The randomisation sanity check (Adebayo et al., 2018): maps of a faithful method change when the model does."""
from __future__ import annotations

import torch

from .result import MetricResult, spearman


def _tower_blocks(model):
    """The image tower's blocks from the top: for open_clip's ResNet and ViT the head first, then the stages or
    blocks; for any other family (timm, Hugging Face), its tap-able layers from the last one down."""
    v = model.visual
    if model.kind == "resnet":
        return [("visual.attnpool", v.attnpool)] + [(f"visual.layer{i}", getattr(v, f"layer{i}")) for i in (4, 3, 2, 1)]
    if model.kind == "vit":
        blocks = v.transformer.resblocks
        return [("visual.ln_post+proj", v.ln_post)] + [(f"visual.transformer.resblocks.{i}", blocks[i])
                                                       for i in range(len(blocks) - 1, -1, -1)]
    return [(name, model.model.get_submodule(name)) for name in reversed(model.layers)]


def sanity_check(make_cam, model, images, prompts, steps: int = 3, seed: int = 0) -> MetricResult:
    """Cascading randomisation (Adebayo et al., 2018): re-initialise the image tower from the top, one block
    more at each step, and recompute the saliency with ``make_cam(randomised_model)``. Values: the mean Spearman
    rank correlation (ties at average rank) of each step's maps with the original ones (should fall well below 1;
    maps that are constant at either step are left out of the mean)."""
    base = make_cam(model)(images, prompts).saliency
    wrapper = model.clone()
    clone = wrapper.model
    gen = torch.Generator().manual_seed(seed)
    names, corrs = [], []
    blocks = dict((n, m) for n, m in _tower_blocks(wrapper))
    for name, _ in list(blocks.items())[:steps]:
        module = blocks[name]
        for p in module.parameters():
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        if name.endswith("proj") and getattr(clone.visual, "proj", None) is not None:
            clone.visual.proj.data.copy_(torch.randn(clone.visual.proj.shape, generator=gen) * 0.02)
        sal = make_cam(wrapper)(images, prompts).saliency
        names.append(name)
        corrs.append(spearman(base.flatten(-2), sal.flatten(-2)).nanmean())
    return MetricResult("sanity_check_spearman", torch.stack(corrs), {"randomised_from_top": names, "seed": seed})
