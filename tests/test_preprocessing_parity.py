"""decomviz's input tensor equals the model's own preprocessing: open_clip's transform of every open_clip tower
family (square inputs: resize the shorter side, truncating the longer as torchvision does, centre-crop with
offsets rounded half to even; SigLIP: the whole image squashed), on odd photo sizes; and a model made from an
open_clip name without its pretrained tag gets the preprocessing of its family. Where decomviz differs on
purpose (EXIF orientation, transparency over white, Hugging Face processors), docs/preprocessing.md says why
and by how much."""
import numpy as np
import pytest
import torch
from PIL import Image

import decomviz as dv
from tests.tower_zoo import char_tokenizer, open_clip_model

#: Where both transforms agree, the tensors differ by float rounding only.
TOLERANCE = 1e-5
#: (width, height) of the photos: odd sizes where rounding the longer side or the crop offset could go either way
SIZES = [(333, 517), (517, 333), (999, 64), (65, 64), (64, 1001), (223, 224), (301, 299)]


def _photo(w, h, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 7 + 2, w // 7 + 2, 3), dtype=np.uint8)  # structure at every scale
    big = np.asarray(Image.fromarray(base).resize((w, h), Image.NEAREST))
    return Image.fromarray(np.clip(big.astype(int) + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8))


def _own_transform(model):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2
    cfg = open_clip.get_model_preprocess_cfg(model)
    return image_transform_v2(PreprocessCfg(**{k: v for k, v in cfg.items() if k in PreprocessCfg.__dataclass_fields__}),
                              is_train=False)


@pytest.mark.parametrize("family", ["openclip-rn", "openclip-vit", "timm-siglip", "timm-convnext"])
def test_input_tensor_equals_open_clips_transform(family):
    raw = open_clip_model(family)
    wrapped = dv.load_model(raw, device="cpu")
    own = _own_transform(raw)
    for w, h in SIZES:
        photo = _photo(w, h)
        ours = wrapped.prepare(photo).tensor
        theirs = own(photo)[None]
        assert ours.shape == theirs.shape
        err = float((ours - theirs).abs().max())
        assert err < TOLERANCE, f"{family} at {w}x{h}: max difference {err:.3g}"


def test_squashing_models_equal_open_clips_transform():
    raw = open_clip_model("openclip-vit")
    raw.visual.preprocess_cfg = {"size": (64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                 "interpolation": "bicubic", "resize_mode": "squash"}
    wrapped = dv.load_model(raw, device="cpu")
    own = _own_transform(raw)
    for w, h in SIZES:
        photo = _photo(w, h, seed=1)
        assert float((wrapped.prepare(photo).tensor - own(photo)[None]).abs().max()) < TOLERANCE


def test_siglip_from_a_weights_file_gets_siglips_preprocessing(tmp_path, monkeypatch):
    from decomviz.models import loading
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not read in this test")
    monkeypatch.setattr(loading, "_load_state_dict", lambda model, path: None)  # the weights are not the point
    for model in (dv.load_model("ViT-B-16-SigLIP", checkpoint=weights, tokenizer=char_tokenizer, device="cpu"),
                  dv.load_model("ViT-B-16-SigLIP", pretrained=None, tokenizer=char_tokenizer, device="cpu")):
        assert model.resize_mode == "squash"
        assert torch.allclose(model.mean.flatten(), torch.full((3,), 0.5))
        assert torch.allclose(model.std.flatten(), torch.full((3,), 0.5))
        photo = _photo(333, 517)
        own = _own_transform(model.model)
        assert float((model.prepare(photo).tensor - own(photo)[None]).abs().max()) < TOLERANCE


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hugging_face_models_match_their_processor_to_one_8_bit_level(kind):
    """Hugging Face processors crop with offsets rounded down (decomviz follows them for these models) and round
    a few resized pixels to the neighbouring 8-bit level: at most one level apart (docs/preprocessing.md)."""
    import transformers
    from tests.tower_zoo import hf_model
    if kind == "clip":
        proc = transformers.CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    else:
        proc = transformers.SiglipImageProcessor(size={"height": 64, "width": 64})

    class Processor:
        image_processor = proc

        def __call__(self, prompts):
            return char_tokenizer(prompts)
    model = dv.load_model(hf_model(kind), tokenizer=Processor(), device="cpu")
    level = float((1 / 255 / model.std).max())
    for w, h in SIZES:
        photo = _photo(w, h, seed=2)
        diff = (model.prepare(photo).tensor - proc(images=photo, return_tensors="pt")["pixel_values"]).abs()
        assert float(diff.max()) <= level + TOLERANCE and float(diff.mean()) < 1e-3, (w, h, float(diff.max()))
