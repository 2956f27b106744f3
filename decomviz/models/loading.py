"""Loading CLIP models: the only place that knows where weights come from (bundled folders, open_clip
names and tags, local checkpoint files). Everything else takes a `CLIPModel`."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional, Union

import torch

from .wrapper import CLIPModel, ModelLoadError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUNDLED = ("parts-rn", "parts-vit")
# training recipes that are not shipped, with the reason a user gets when asking for them
NOT_BUNDLED = {"tiny-rn": "it is a 64-px recipe for tests and smoke runs"}
DEFAULT_MODEL = "parts-rn"


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def list_models() -> List[str]:
    """Bundled model names, then every open_clip architecture name."""
    import open_clip
    return list(BUNDLED) + open_clip.list_models()


def load_model(name: str = DEFAULT_MODEL, pretrained: Optional[str] = None, *,
               checkpoint: Optional[Union[str, os.PathLike]] = None,
               device: Optional[Union[str, torch.device]] = None) -> CLIPModel:
    """Load a CLIP model for explanation.

    - ``load_model()`` / ``load_model("parts-rn")``: the bundled PartsWorld model (no download).
    - ``load_model("RN50", pretrained="openai")``: an open_clip name and pretrained tag (downloads, cached).
    - ``load_model("ViT-B-16", checkpoint="weights.safetensors")``: local weights for an open_clip name;
      ``checkpoint`` may also be a folder with ``open_clip_config.json`` and weights (then ``name`` may be None).
    - ``load_model("RN50", pretrained=None)``: random weights (tests, offline experiments).
    """
    import open_clip

    device = torch.device(device) if device is not None else _default_device()
    if pretrained is not None and checkpoint is not None:
        raise ModelLoadError("Give either pretrained= (an open_clip tag) or checkpoint= (a local file), not both.")

    if checkpoint is not None and Path(checkpoint).is_dir():
        return _load_local_dir(Path(checkpoint), name or Path(checkpoint).name, device)
    if name in BUNDLED and checkpoint is None and pretrained is None:
        folder = ASSETS / name
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"The bundled model '{name}' is missing from {folder}. Train it with "
                                 f"`decomviz train --model {name} --out {folder}` or reinstall decomviz.")
        return _load_local_dir(folder, name, device)
    if name in NOT_BUNDLED and checkpoint is None and pretrained is None:
        raise ModelLoadError(f"'{name}' is not bundled with this release: {NOT_BUNDLED[name]}. Train it with "
                             f"`decomviz train --model {name} --out DIR` and load it with "
                             f"dv.load_model(checkpoint='DIR'), or use the bundled 'parts-rn'.")
    if not isinstance(name, str) or not name:
        raise ModelLoadError("Name a model: one of the bundled models "
                             f"{', '.join(BUNDLED)} or an open_clip architecture such as 'RN50'.")
    if name not in open_clip.list_models():
        close = [m for m in list_models() if name.lower().replace("/", "-") in m.lower()][:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"Unknown model '{name}'. Bundled: {', '.join(BUNDLED)}; open_clip knows "
                             f"{len(open_clip.list_models())} names (see dv.list_models()).{hint}")

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelLoadError(f"Checkpoint not found: '{path}'.")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
        _load_state_dict(model, path)
        source = str(path)
    else:
        if pretrained is not None:
            tags = open_clip.list_pretrained_tags_by_model(name)
            if pretrained not in tags:
                raise ModelLoadError(f"Unknown pretrained tag '{pretrained}' for {name}. Known tags: "
                                     f"{', '.join(tags) or 'none'}; or pass checkpoint='path/to/weights'.")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
        except Exception as err:  # download or cache failures: say how to work offline
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            raise ModelLoadError(
                f"Could not get the '{pretrained}' weights of {name}"
                f"{' (HF_HUB_OFFLINE is set, so nothing can be downloaded)' if offline else ''}: {err}. "
                f"To use local weights: dv.load_model('{name}', checkpoint='path/to/weights.safetensors') "
                "(or a .pt/.bin state dict, or a folder with open_clip_config.json).") from None
        source = f"open_clip:{name}:{pretrained}" if pretrained else f"open_clip:{name}:random-init"
    tokenizer = open_clip.get_tokenizer(name)
    cfg = open_clip.get_model_preprocess_cfg(model)
    return CLIPModel(model, tokenizer, name=name, pretrained=pretrained, source=source,
                     preprocess_cfg=cfg, device=device)


def _load_local_dir(folder: Path, name: str, device: torch.device) -> CLIPModel:
    import open_clip
    if not (folder / "open_clip_config.json").is_file():
        raise ModelLoadError(f"'{folder}' has no open_clip_config.json; a checkpoint folder needs one "
                             "(with 'model_cfg' and 'preprocess_cfg') beside the weights.")
    ident = f"local-dir:{folder}"
    model = open_clip.create_model(ident, device=device)
    tokenizer = open_clip.get_tokenizer(ident)
    cfg = open_clip.get_model_preprocess_cfg(model)
    extra = json.loads((folder / "open_clip_config.json").read_text()).get("decomviz", {})
    return CLIPModel(model, tokenizer, name=name, pretrained=None, source=str(folder),
                     preprocess_cfg=cfg, device=device, default_layer=extra.get("default_layer"))


def _load_state_dict(model: torch.nn.Module, path: Path) -> None:
    """Weights from safetensors, or from a torch file with weights_only=True (never arbitrary pickles)."""
    import open_clip
    try:
        open_clip.load_checkpoint(model, str(path), weights_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"Could not load weights from '{path}': {err}. decomviz only loads safetensors files or plain "
            "state dicts (torch.load with weights_only=True); a checkpoint that needs arbitrary code to "
            "unpickle is refused.") from None
