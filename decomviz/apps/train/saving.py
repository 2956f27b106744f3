"""Writing and reading a trained model as an open_clip local-dir folder."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .recipes import MEAN, STD


def save_model(model, model_cfg: Dict[str, Any], out: Path, dtype: torch.dtype = torch.float16,
               default_layer: Optional[str] = None) -> Path:
    """Write ``open_clip_config.json`` and ``open_clip_model.safetensors`` (floats cast to ``dtype``).

    ``default_layer`` is recorded under ``"decomviz"`` in the config: the layer decomviz taps by default."""
    from safetensors.torch import save_file
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = model_cfg["vision_cfg"]["image_size"]
    config = {
        "model_cfg": copy.deepcopy(model_cfg),
        "preprocess_cfg": {"size": size, "mode": "RGB", "mean": list(MEAN), "std": list(STD),
                           "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0},
    }
    if default_layer is not None:
        config["decomviz"] = {"default_layer": default_layer}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.state_dict().items()}
    path = out / "open_clip_model.safetensors"
    save_file(state, str(path), metadata={"format": "pt", "source": "decomviz.train"})
    os.chmod(path, 0o644)
    return path


def load_local(folder: Path):
    """(model, preprocess, tokenizer) through open_clip's own local-dir path (eval mode, fp32)."""
    import open_clip
    folder = str(Path(folder).resolve())
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + folder)
    tokenizer = open_clip.get_tokenizer("local-dir:" + folder)
    return model.eval(), preprocess, tokenizer
