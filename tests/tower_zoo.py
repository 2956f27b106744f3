"""Small random models of every tower family (narrow widths, a few blocks), built through the same code paths as
the full-size ones: open_clip's CLIP with its own towers or a `TimmModel` (timm created with small dims), and
Hugging Face CLIPModel / SiglipModel from small configs. Used by tests/test_towers.py."""
from __future__ import annotations

import functools
from unittest import mock

import torch

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT_SMALL = dict(embed_dim=32, depth=2, num_heads=2, img_size=64)

# family -> (open_clip-style vision_cfg, timm kwargs or None); the timm names are those open_clip's configs use
OPEN_CLIP_FAMILIES = {
    "openclip-rn": ({"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None}, None),
    "openclip-vit": ({"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16}, None),
    "openclip-vit-gap": ({"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16,
                          "no_ln_pre": True, "pool_type": "avg"}, None),
    "openclip-coca-pooler": ({"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16,
                              "attentional_pool": True, "attn_pooler_queries": 4, "attn_pooler_heads": 2}, None),
    "timm-siglip": ({"timm_model_name": "vit_base_patch16_siglip_224", "timm_pool": "map", "timm_proj": "none",
                     "image_size": 64}, VIT_SMALL),
    "timm-vit-token": ({"timm_model_name": "vit_large_patch14_clip_224", "timm_pool": "token", "timm_proj": None,
                        "image_size": 56}, dict(VIT_SMALL, img_size=56)),
    "timm-vit-reg": ({"timm_model_name": "vit_base_patch16_siglip_224", "timm_pool": "map", "timm_proj": "none",
                      "image_size": 64}, dict(VIT_SMALL, reg_tokens=2)),
    "timm-eva02": ({"timm_model_name": "eva02_base_patch16_clip_224", "timm_pool": "token", "timm_proj": None,
                    "image_size": 64}, VIT_SMALL),
    "timm-pe-core": ({"timm_model_name": "vit_pe_core_base_patch16_224", "timm_pool": "map", "timm_proj": None,
                      "image_size": 64}, VIT_SMALL),
    "timm-convnext": ({"timm_model_name": "convnext_base", "timm_pool": "", "timm_proj": "linear",
                       "image_size": 64}, dict(depths=(1, 1, 1, 1), dims=(16, 16, 32, 32))),
    "timm-fastvit": ({"timm_model_name": "fastvit_mci0", "timm_pool": "avg", "timm_proj": None, "image_size": 64},
                     dict(layers=(1, 1, 1, 1), embed_dims=(16, 16, 32, 32))),
    "timm-swin": ({"timm_model_name": "swin_base_patch4_window7_224", "timm_pool": "", "timm_proj": "linear",
                   "image_size": 64}, dict(img_size=64, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4)),
    "timm-vitamin": ({"timm_model_name": "vitamin_base_224", "timm_pool": "", "timm_proj": "linear",
                      "image_size": 64}, dict(img_size=64, embed_dim=32, depth=2, num_heads=2, embed_cfg="small")),
}


def open_clip_model(family: str, seed: int = 0) -> torch.nn.Module:
    """A small random open_clip CLIP of the family (eval mode, on the CPU)."""
    import open_clip
    import timm
    vision, timm_kwargs = OPEN_CLIP_FAMILIES[family]
    torch.manual_seed(seed)
    if timm_kwargs is None:
        return open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=TEXT).eval()
    kwargs = dict(timm_kwargs)
    if kwargs.get("embed_cfg") == "small":  # ViTamin's convolutional stem, narrow
        from timm.models.vitamin import VitCfg, VitConvCfg
        kwargs["embed_cfg"] = VitCfg(embed_dim=(16, 16, 32), depths=(1, 1, 1), stem_width=16, head_type="1d",
                                     conv_cfg=VitConvCfg(norm_layer="layernorm2d", norm_eps=1e-6))
    small = functools.partial(timm.create_model, **kwargs)
    with mock.patch.object(timm, "create_model", small):
        return open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=TEXT).eval()


def hf_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A small random Hugging Face CLIPModel ("clip") or SiglipModel ("siglip")."""
    import transformers
    torch.manual_seed(seed)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = dict(common, vocab_size=1000, max_position_embeddings=16, bos_token_id=998, eos_token_id=999,
                pad_token_id=0)
    vision = dict(common, image_size=64, patch_size=16)
    if kind == "clip":
        cfg = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        return transformers.CLIPModel(cfg).eval()
    cfg = transformers.SiglipConfig(text_config=text, vision_config=vision)
    return transformers.SiglipModel(cfg).eval()


def char_tokenizer(prompts):
    """A callable tokenizer (list of strings -> lists of ids) for the small HF models: bytes + 1, an end token."""
    return [[min(b, 998) + 1 for b in p.encode()][:15] + [999] for p in prompts]
