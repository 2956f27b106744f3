"""Loading CLIP models: the only place that knows where weights come from (bundled folders, open_clip
names and tags, local checkpoint files). Everything else takes a `CLIPModel`."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, List, Optional, Union

import torch

from . import bundled_clip
from .bpe import BPETokenizer
from .wrapper import CLIPModel, ModelLoadError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUNDLED = ("parts-rn", "parts-rn-dense", "parts-vit")
# training recipes that are not shipped, with the reason a user gets when asking for them
NOT_BUNDLED = {"tiny-rn": "it is a 64-px recipe for tests and smoke runs"}
DEFAULT_MODEL = "parts-rn"
# the weight files open_clip looks for in a checkpoint folder, preferred first; any other *.safetensors, *.bin
# or *.pth is taken when it is the only one
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth",
                "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device) -> torch.device:
    """A torch device this machine has, or a ModelLoadError that says which ones it has."""
    if device is None:
        return _default_device()
    have = "cpu" + (f", cuda (cuda:0 to cuda:{torch.cuda.device_count() - 1})" if torch.cuda.is_available() else "")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ModelLoadError(f"Unknown device {device!r}: this machine has {have}.") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ModelLoadError(f"Device {device!r} is not available: this machine has {have}.")
    if dev.type not in ("cpu", "cuda"):
        backend = getattr(torch.backends, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ModelLoadError(f"Device {device!r} is not available: this machine has {have}.")
    return dev


def list_models() -> List[str]:
    """Bundled model names, then every open_clip architecture name."""
    import open_clip
    return list(BUNDLED) + open_clip.list_models()


def load_model(name: Union[None, str, torch.nn.Module] = None, pretrained: Optional[str] = None, *,
               checkpoint: Optional[Union[str, os.PathLike]] = None,
               device: Optional[Union[str, torch.device]] = None, tokenizer: Any = None) -> CLIPModel:
    """Load a CLIP model for explanation.

    - ``load_model()`` / ``load_model("parts-rn")``: the bundled PartsWorld model (no download).
    - ``load_model("RN50", pretrained="openai")``: an open_clip name and pretrained tag (downloads, cached).
    - ``load_model("ViT-B-16", checkpoint="weights.safetensors")``: local weights for an open_clip name;
      ``checkpoint`` may also be a folder with ``open_clip_config.json`` and weights (then ``name`` may be None).
    - ``load_model("RN50", pretrained=None)``: random weights (tests, offline experiments).
    - ``load_model("hf-hub:org/model")``: an open_clip model on the Hugging Face hub.
    - ``load_model(model)``: a model object, open_clip's or a Hugging Face ``CLIPModel`` / ``SiglipModel``
      (``load_model(hf_model, tokenizer=processor)``); preprocessing comes from the model's own config. The
      object is left as it was (training mode, ``requires_grad``, device): decomviz explains a copy of it, so
      your model still trains and works with other libraries; load it again to explain it after more training.

    ``tokenizer``: a Hugging Face tokenizer or processor, or any callable from a list of strings to token ids;
    it replaces the model's own (e.g. offline, where that one would come from the hub).
    """
    device = resolve_device(device)
    if isinstance(name, torch.nn.Module):
        if pretrained is not None or checkpoint is not None:
            raise ModelLoadError("A model object comes with its weights: pass it without pretrained= or checkpoint=.")
        return _wrap_object(name, tokenizer, device)
    if pretrained is not None and checkpoint is not None:
        raise ModelLoadError("Give either pretrained= (an open_clip tag) or checkpoint= (a local file), not both.")

    if checkpoint is not None and Path(checkpoint).is_dir():
        return _load_local_dir(Path(checkpoint), name or Path(checkpoint).name, device, tokenizer)
    if name is None and checkpoint is not None:
        raise ModelLoadError(f"Name the architecture of the weights in '{checkpoint}', e.g. dv.load_model('RN50', "
                             "checkpoint=...), or pass a folder holding open_clip_config.json beside the weights.")
    name = DEFAULT_MODEL if name is None else name
    if name in BUNDLED and checkpoint is None and pretrained is None:
        folder = ASSETS / name
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"The bundled model '{name}' is missing from {folder}. Train it with "
                                 f"`decomviz train --model {name} --out {folder}` or reinstall decomviz.")
        return _load_local_dir(folder, name, device, tokenizer, bundled=True)
    if name in BUNDLED:  # with pretrained= or a checkpoint file
        raise ModelLoadError(
            f"'{name}' is a bundled model with its own weights: load it with dv.load_model('{name}'), without "
            f"{'pretrained=' if pretrained is not None else 'checkpoint='}. For open_clip weights name an open_clip "
            "architecture (e.g. dv.load_model('RN50', pretrained='openai')); for a checkpoint folder pass "
            "checkpoint='folder'.")
    if name in NOT_BUNDLED and checkpoint is None and pretrained is None:
        raise ModelLoadError(f"'{name}' is not bundled with this release: {NOT_BUNDLED[name]}. Train it with "
                             f"`decomviz train --model {name} --out DIR` and load it with "
                             f"dv.load_model(checkpoint='DIR'), or use the bundled 'parts-rn'.")
    import open_clip  # not before: the bundled models load without it (see bundled_clip)
    if not isinstance(name, str) or not name:
        raise ModelLoadError("Name a model: one of the bundled models "
                             f"{', '.join(BUNDLED)} or an open_clip architecture such as 'RN50'.")
    if not name.startswith("hf-hub:") and name not in open_clip.list_models():
        close = [m for m in list_models() if name.lower().replace("/", "-") in m.lower() and m != name][:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"Unknown model '{name}'. Bundled: {', '.join(BUNDLED)}; open_clip knows "
                             f"{len(open_clip.list_models())} names (see dv.list_models()).{hint}")

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelLoadError(f"Checkpoint not found: '{path}'.")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
        _load_state_dict(model, path)
        _check_finite(model, path)
        source = str(path)
        _named_preprocess(model, name)
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
                f"Could not get {name if pretrained is None else f'the {pretrained!r} weights of {name}'}"
                f"{' (HF_HUB_OFFLINE is set, so nothing can be downloaded)' if offline else ''}: {err}. "
                f"To use local weights: dv.load_model('{name}', checkpoint='path/to/weights.safetensors') "
                "(or a .pt/.bin state dict, or a folder with open_clip_config.json).") from None
        if pretrained:
            _check_finite(model, f"the '{pretrained}' weights of {name}")
        else:
            _named_preprocess(model, name)
        source = f"open_clip:{name}:{pretrained}" if pretrained else f"open_clip:{name}:random-init"
    tokenizer = _open_clip_tokenizer(name) if tokenizer is None else tokenizer
    cfg = open_clip.get_model_preprocess_cfg(model)
    return CLIPModel(model, tokenizer, name=name, pretrained=pretrained, source=source,
                     preprocess_cfg=cfg, device=device)


def _named_preprocess(model: torch.nn.Module, name: str) -> None:
    """Give a model made from an open_clip name without a pretrained tag (random weights, or a weights file) the
    preprocessing of its family: open_clip then has only its defaults (OpenAI's mean and std, a centre crop), not
    the preprocessing recorded with the name's pretrained weights (SigLIP: mean = std = 0.5, the whole image
    squashed). When every tag of the name agrees, that preprocessing is set on the model (as open_clip does for a
    tag), so that decomviz and open_clip's own transform of this model see the same input."""
    import open_clip
    if name.startswith("hf-hub:"):
        return
    keys = ("mean", "std", "interpolation", "resize_mode")
    found = []
    for tag in open_clip.list_pretrained_tags_by_model(name):
        cfg = open_clip.get_pretrained_cfg(name, tag) or {}
        found.append(tuple((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k in keys
                           if (v := cfg.get(k)) is not None))
    if not found or len(set(found)) != 1:
        return  # no tag, or tags that disagree: open_clip's defaults stay (a folder's config can say otherwise)
    visual = getattr(model, "visual", None)
    current = dict(getattr(visual, "preprocess_cfg", None) or {})
    if visual is not None:
        visual.preprocess_cfg = {**current, **dict(found[0])}


def _open_clip_tokenizer(name: str):
    import open_clip
    try:
        return open_clip.get_tokenizer(name)
    except Exception as err:  # e.g. SigLIP's tokenizer, which comes from the Hugging Face hub
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise ModelLoadError(f"Could not get the tokenizer of {name}{' (HF_HUB_OFFLINE is set)' if offline else ''}: "
                             f"{_reason(err)[:200]}. Pass one: dv.load_model('{name}', ..., tokenizer=tok), a Hugging "
                             "Face tokenizer or any callable from a list of strings to token ids.") from None


def _wrap_object(model: torch.nn.Module, tokenizer, device: torch.device) -> CLIPModel:
    """A model object, wrapped around a copy of it (the object stays as it was); a layer may still be named by the
    object's own module (``layer=model.visual.layer4``)."""
    import weakref
    wrapped = _wrap_copy(model, _copy_of(model), tokenizer, device)
    wrapped.source_modules = weakref.WeakKeyDictionary({m: n for n, m in model.named_modules()})
    return wrapped


def _wrap_copy(original: torch.nn.Module, model: torch.nn.Module, tokenizer, device: torch.device) -> CLIPModel:
    """A model object: open_clip's (tokenizer and preprocessing from its config when it has them) or a Hugging
    Face CLIPModel / SiglipModel (tokenizer= required; preprocessing from its config and the processor, if given)."""
    kind = type(original).__name__
    if type(model).__module__.startswith("transformers"):
        if tokenizer is None:
            raise ModelLoadError(f"A Hugging Face {kind} needs its tokenizer: dv.load_model(model, tokenizer=...), "
                                 "a tokenizer or processor (e.g. AutoProcessor.from_pretrained(...)).")
        cfg = {"crop_offsets": "floor", **_processor_cfg(tokenizer)}  # Hugging Face's processors round down
        name = getattr(model.config, "name_or_path", "") or kind
        return CLIPModel(model.to(device), tokenizer, name=name, pretrained=None, source=f"object:{kind}",
                         preprocess_cfg=cfg, device=device)
    if not hasattr(model, "encode_image") or not hasattr(model, "encode_text"):
        raise ModelLoadError(f"dv.load_model takes an open_clip model or a Hugging Face CLIPModel / SiglipModel; "
                             f"got a {kind}.")
    import open_clip
    if tokenizer is None:
        vocab = getattr(model, "vocab_size", None) or getattr(getattr(model, "token_embedding", None),
                                                              "num_embeddings", None)
        if vocab != 49408:
            raise ModelLoadError(f"This {kind} does not use CLIP's tokenizer: pass its own, dv.load_model(model, "
                                 "tokenizer=open_clip.get_tokenizer('<its name>')) or any callable from strings to "
                                 "token ids.")
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=getattr(model, "context_length", 77))
    try:
        cfg = open_clip.get_model_preprocess_cfg(model)
    except AttributeError:  # a tower with no preprocessing and no image_size: the adapter's defaults, if any
        cfg = {}
    return CLIPModel(model.to(device), tokenizer, name=kind, pretrained=None, source=f"object:{kind}",
                     preprocess_cfg=dict(cfg), device=device)


def _copy_of(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the user's model for decomviz to set in eval mode, without gradients on its weights and on its
    device: the object given stays as it was (it may still be trained, or used by other libraries)."""
    import copy
    try:
        return copy.deepcopy(model)
    except Exception as err:  # a module holding something that cannot be copied (a lock, an open file)
        raise ModelLoadError(f"dv.load_model works on a copy of the {type(model).__name__} given (so that it stays "
                             f"as it was), and this one cannot be copied ({type(err).__name__}: {err}). Save its "
                             "weights and load them with dv.load_model(name, checkpoint=...).") from None


def _processor_cfg(tokenizer) -> dict:
    """Preprocessing from a Hugging Face processor's image processor, when one is given (else the model's own)."""
    proc = getattr(tokenizer, "image_processor", None)
    if proc is None:
        return {}
    size = getattr(proc, "crop_size", None) if getattr(proc, "do_center_crop", False) else getattr(proc, "size", None)
    if size is not None and not isinstance(size, int):  # a dict, or transformers 5's SizeDict
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        size = (get("height"), get("width")) if get("height") else get("shortest_edge")
    cfg = {"mean": getattr(proc, "image_mean", None), "std": getattr(proc, "image_std", None), "size": size}
    if getattr(proc, "do_center_crop", None) is False:
        cfg["resize_mode"] = "squash"
    return cfg


def _load_local_dir(folder: Path, name: str, device: torch.device, tokenizer=None, bundled: bool = False) -> CLIPModel:
    """A checkpoint folder: open_clip_config.json and one weights file. Nothing is ever left at random weights:
    a folder without weights, or with weights open_clip would not find, is refused. A bundled model is built by
    `bundled_clip` (no open_clip import) when its config allows, by open_clip otherwise."""
    config = _read_config(folder)
    weights = _find_weights(folder)
    model = _build_bundled(config, weights) if bundled else None
    if model is not None:
        model = model.to(device)
        cfg = model.visual.preprocess_cfg = bundled_clip.preprocess_cfg(model, config.get("preprocess_cfg"))
        tokenizer = bundled_tokenizer(model.context_length) if tokenizer is None else tokenizer
    else:
        model, tokenizer, cfg = _open_clip_local_dir(folder, weights, device, tokenizer)
    _check_finite(model, weights)
    extra = config.get("decomviz", {})
    if not isinstance(extra, dict):
        raise ModelLoadError(f"'decomviz' in {folder / 'open_clip_config.json'} must be an object, e.g. "
                             '{"default_layer": "visual.layer4"}.')
    return CLIPModel(model, tokenizer, name=name, pretrained=None, source=str(folder),
                     preprocess_cfg=cfg, device=device, default_layer=extra.get("default_layer"))


def _open_clip_local_dir(folder: Path, weights: Path, device: torch.device, tokenizer):
    import open_clip
    ident = f"local-dir:{folder}"
    try:  # open_clip picks the same weights file as _find_weights
        model = open_clip.create_model(ident, device=device)
        tokenizer = open_clip.get_tokenizer(ident) if tokenizer is None else tokenizer
    except Exception as err:
        raise ModelLoadError(f"Could not load the checkpoint folder '{folder}' (open_clip_config.json with "
                             f"{weights.name}): {_reason(err)}. The config's 'model_cfg' "
                             "must describe the architecture whose weights the file holds; weights load only from "
                             "safetensors or plain state dicts (code that runs on unpickling is refused).") from None
    return model, tokenizer, open_clip.get_model_preprocess_cfg(model)


def _build_bundled(config: dict, weights: Path) -> Optional[torch.nn.Module]:
    """The bundled model built by `bundled_clip` with its weights, or None where open_clip must build it (a config
    or weights file that module does not take)."""
    model = bundled_clip.build(config["model_cfg"]) if weights.suffix == ".safetensors" else None
    if model is None:
        return None
    from safetensors.torch import load_file
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except Exception:  # names or shapes of another build, an unreadable file: open_clip's loader says what is wrong
        return None
    return model


@functools.lru_cache(maxsize=None)
def bundled_tokenizer(context_length: int) -> BPETokenizer:
    """CLIP's tokenizer for the bundled models, one per context length (their tables are shared)."""
    return BPETokenizer(context_length)


def _read_config(folder: Path) -> dict:
    path = folder / "open_clip_config.json"
    if not path.is_file():
        raise ModelLoadError(f"'{folder}' has no open_clip_config.json; a checkpoint folder needs one "
                             "(with 'model_cfg' and 'preprocess_cfg') beside the weights.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"'{path}' is not valid JSON ({err}); fix or replace it.") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ModelLoadError(f"'{path}' has no 'model_cfg' object; a checkpoint folder's config holds "
                             "{'model_cfg': {...}, 'preprocess_cfg': {...}} as open_clip writes it.")
    if not isinstance(config.get("preprocess_cfg", {}), dict):
        raise ModelLoadError(f"'preprocess_cfg' in '{path}' must be an object (mean, std, size, ...).")
    return config


def _find_weights(folder: Path) -> Path:
    """The folder's weights file, as open_clip would pick it; ModelLoadError when there is none or it is
    ambiguous (open_clip would then load random weights, or pick one silently)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = [p for p in files if p.suffix in WEIGHT_SUFFIXES]
    if len(found) == 1:
        return found[0]
    others = [p.name for p in files if p.name != "open_clip_config.json"]
    if found:
        raise ModelLoadError(f"'{folder}' holds several weight files ({', '.join(p.name for p in found)}) and none "
                             f"has a standard name; keep one, or name it {WEIGHT_NAMES[0]}.")
    hint = (f" It holds {', '.join(others[:6])}: a weights file must end in {', '.join(WEIGHT_SUFFIXES)} "
            f"(rename it, e.g. to {WEIGHT_NAMES[0]} or open_clip_pytorch_model.bin)." if others else "")
    raise ModelLoadError(f"'{folder}' has a config but no weights file that open_clip reads, so only random weights could be loaded."
                         f"{hint} For random weights on purpose use dv.load_model('<open_clip name>', "
                         "pretrained=None).")


def _check_finite(model: torch.nn.Module, source) -> None:
    bad = [n for n, p in model.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise ModelLoadError(f"The weights from {source} hold NaN or infinite values in {len(bad)} tensor(s) (e.g. "
                             f"{bad[0]!r}): the checkpoint is damaged or was saved after training diverged.")


def _load_state_dict(model: torch.nn.Module, path: Path) -> None:
    """Weights from safetensors, or from a torch file with weights_only=True (never arbitrary pickles)."""
    import open_clip
    try:
        open_clip.load_checkpoint(model, str(path), weights_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"Could not load weights from '{path}': {_reason(err)}. The file must hold the "
            "weights of the architecture named. decomviz only loads safetensors files or plain state dicts "
            "(torch.load with weights_only=True); a checkpoint that needs arbitrary code to unpickle is refused.") \
            from None


def _reason(err: BaseException) -> str:
    """A loading error in a line; torch's advice to unpickle without weights_only (unsafe) is not repeated."""
    import pickle
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text:
        return ("UnpicklingError: the file is a pickle that needs more than plain tensors to load, i.e. it could "
                "run code")
    return f"{type(err).__name__}: {text[:600]}"
