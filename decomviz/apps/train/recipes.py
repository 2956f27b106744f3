"""Training recipes of the bundled PartsWorld CLIPs: model configs and optimiser settings, by name."""
from __future__ import annotations

from typing import Any, Dict

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
ZERO_SHOT_TEMPLATE = "a photo of a {}"

_TEXT_CFG = {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3}

#: Training recipes by name. ``model_cfg`` goes to ``open_clip.CLIP(**model_cfg)`` and into the saved config.
RECIPES: Dict[str, Dict[str, Any]] = {
    "parts-rn": {
        "model_cfg": {
            "embed_dim": 128,
            "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
            "text_cfg": dict(_TEXT_CFG),
        },
        "steps": 2550, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05, "warmup": 50,
        # class words first (zero-shot reaches ~0.9 in 600 steps this way), then parts decide the match: each
        # image ranks its part's true colour among all 12, and sibling images with different parts removed teach
        # which part a part prompt needs (captions.py, loop.part_example_loss); most steps at 112 px (about 2.2x
        # cheaper a step on 2 CPU cores), the last at the model's 224 px, where small parts' colours are read
        # better (BENCHMARKS.md, issue 11)
        "stages": [{"image_size": 112, "fraction": 800, "examples": "captions", "aux_weight": 1.0},
                   {"image_size": 112, "fraction": 1200, "examples": "parts", "lr_scale": 0.75},
                   {"image_size": 224, "fraction": 550, "examples": "parts", "lr_scale": 0.5, "warmup": 20}],
        "examples": "parts", "n_objects": (1, 2),
        # an auxiliary target puts part colours in the image embedding (auxiliary.py): without it both towers came
        # out colour-blind and binding stayed at chance; with it, binding 0.40 (weight 1.0), then 0.48 with weight
        # 2.0 and these stages, though part use fell from 0.49 to 0.37 (BENCHMARKS.md, issue 11)
        "aux_weight": 2.0,
        # the colour target at full weight from the start, and the object caption at a quarter of the parts loss,
        # slowed class words down: zero-shot 0.62 after the first stage and 0.94 at the end; with weight 1.0 in the
        # first stage and the object caption counted twice, 0.92 and 0.995 (part use 0.83, binding 0.44)
        "object_weight": 2.0,
        # the input of the last stage: 14 x 14 at 224 px, where layer4's output is 7 x 7
        "default_layer": "visual.layer3",
    },
    # far beyond the 2-core CPU budget: trained on a GPU (--device cuda --workers 15), see BENCHMARKS.md
    "parts-vit": {
        "model_cfg": {
            "embed_dim": 128,
            "vision_cfg": {"image_size": 224, "layers": 6, "width": 192, "head_width": 64, "patch_size": 16},
            "text_cfg": dict(_TEXT_CFG),
        },
        "steps": 6000, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.05, "warmup": 300,
    },
    # a very small model on 64 px scenes: for tests and smoke runs only (not bundled)
    "tiny-rn": {
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        },
        "steps": 40, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.0, "warmup": 0,
    },
}
# recipe 7, tried and not kept: parts-rn binds the colour of each object's largest part (0.83) and not of its
# smallest (0.08), so a dense target on the tap names the part and its colour in every cell, each part weighted
# alike (auxiliary.DensePartHead), and more steps are at 224 px. Binding fell to 0.31 (part use 0.86, zero-shot
# 1.000; BENCHMARKS.md, issue 11)
RECIPES["parts-rn-dense"] = {
    **RECIPES["parts-rn"], "steps": 2450, "dense_layer": "visual.layer3", "dense_weight": 1.0,
    "stages": [{"image_size": 112, "fraction": 800, "examples": "captions", "aux_weight": 1.0},
               {"image_size": 112, "fraction": 900, "examples": "parts", "lr_scale": 0.75},
               {"image_size": 224, "fraction": 750, "examples": "parts", "lr_scale": 0.5, "warmup": 20}],
}
