"""The bundled models built without open_clip (`models.bundled_clip`, `models.bpe`) are the models open_clip builds
from the same folders: same parameters, embeddings, token ids, preprocessing, layers and maps. And loading one
imports neither open_clip nor torch._dynamo (the 0.2 GB that import costs a kernel)."""
import json
import os
import subprocess
import sys

import pytest
import torch

import decomviz as dv
from decomviz.models import bundled_clip
from decomviz.models.bpe import BPETokenizer
from decomviz.models.loading import ASSETS, BUNDLED, _load_local_dir

# float32 on different code paths (the pool's query rows, fused attention): agreement to 1e-5, not bit for bit
ATOL = 1e-5

PROMPTS = [
    "a photo of a house", "the roof of a house", "the WHEEL of a Car!", "a  photo\tof   a\ncat", "", "   ",
    "it's a dog's ball, isn't it?", "we'll see: they've gone; I'd say he's right", "numbers 12 345 6.78 and 1st",
    "café naïve façade Ünïcödé", "日本語のテキスト", "emoji 🐶🚗 and symbols © ® ™ €", "&amp; &lt;b&gt; &quot;quoted&quot;",
    "mojibake: cafÃ©", "hyphen-ated, under_scored and slash/separated", "<start_of_text> inside <end_of_text> text",
    "supercalifragilisticexpialidocious antidisestablishmentarianism", "a " * 60 + "long prompt",
]


@pytest.fixture(scope="module", params=BUNDLED)
def pair(request):
    """(decomviz's build, open_clip's build) of one bundled model."""
    name = request.param
    ours = dv.load_model(name, device="cpu")
    theirs = _load_local_dir(ASSETS / name, name, torch.device("cpu"))
    return ours, theirs


def test_bundled_models_are_built_without_open_clip(pair):
    ours, theirs = pair
    assert isinstance(ours.model, bundled_clip.CLIP) and isinstance(ours.tokenizer, BPETokenizer)
    assert type(theirs.model).__module__.startswith("open_clip")


def test_same_parameters_layers_and_preprocessing(pair):
    ours, theirs = pair
    a, b = ours.model.state_dict(), theirs.model.state_dict()
    assert sorted(a) == sorted(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert (ours.kind, ours.layers, ours.default_layer) == (theirs.kind, theirs.layers, theirs.default_layer)
    assert ours.preprocess_cfg == theirs.preprocess_cfg
    assert ours.image_size == theirs.image_size


def test_same_embeddings(pair):
    ours, theirs = pair
    x = ours.prepare([s.image for s in dv.PartsWorld(3, seed=11)]).tensor
    with torch.no_grad():
        torch.testing.assert_close(ours.model.encode_image(x), theirs.model.encode_image(x), rtol=1e-4, atol=ATOL)
        tokens = ours.tokenizer(PROMPTS[:6])
        torch.testing.assert_close(ours.model.encode_text(tokens), theirs.model.encode_text(tokens),
                                   rtol=1e-4, atol=ATOL)


def test_same_token_ids_and_words(pair):
    ours, theirs = pair
    mine, reference = ours.tokenizer(PROMPTS), theirs.tokenizer(PROMPTS)
    assert mine.shape == reference.shape == (len(PROMPTS), ours.model.context_length)
    assert torch.equal(mine, reference)
    assert (ours.tokenizer.sot_token_id, ours.tokenizer.eot_token_id) == (theirs.tokenizer.sot_token_id,
                                                                          theirs.tokenizer.eot_token_id)
    for ids in reference[:, 1:8].tolist():
        assert ours.tokenizer.decode(ids) == theirs.tokenizer.decode(ids)
    assert torch.equal(ours.tokenizer(PROMPTS[:3], context_length=77), theirs.tokenizer(PROMPTS[:3], context_length=77))


def test_same_decomcam_maps(pair):
    ours, theirs = pair
    scene = dv.PartsWorld(1, seed=4, size=224)[0]
    prompt = f"a photo of a {scene.objects[0].label}"
    a = dv.DecomCAM(ours, n_components=4)(scene.image, prompt)
    b = dv.DecomCAM(theirs, n_components=4)(scene.image, prompt)
    torch.testing.assert_close(a.saliency, b.saliency, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(a.ossms, b.ossms, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(a.base_score, b.base_score, rtol=1e-4, atol=ATOL)


def test_tokenizers_share_their_tables():
    from decomviz.models.loading import bundled_tokenizer
    a, b = bundled_tokenizer(32), bundled_tokenizer(77)
    assert a._tables is b._tables and a is bundled_tokenizer(32)
    assert b(["a cat"]).shape == (1, 77) and torch.equal(a(["a cat"])[0, :4], b(["a cat"])[0, :4])


@pytest.mark.parametrize("change", [
    {"vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "ls_init_value": 0.1}},
    {"text_cfg": {"hf_tokenizer_name": "bert-base-uncased"}},
    {"custom_text": True},
    {"vision_cfg": {"timm_model_name": "convnext_tiny"}},
])
def test_other_configs_are_left_to_open_clip(change):
    cfg = json.loads((ASSETS / "parts-rn" / "open_clip_config.json").read_text())["model_cfg"]
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    assert bundled_clip.build(cfg) is None


def test_the_protocol_still_names_open_clips_version():
    import open_clip
    record = dv.DecomCAM(dv.load_model(device="cpu")).record()
    assert record["versions"]["open_clip"] == open_clip.__version__


def test_explaining_with_the_bundled_model_imports_neither_open_clip_nor_dynamo():
    code = ("import sys, decomviz as dv\n"
            "m = dv.load_model()\n"
            "s = dv.PartsWorld(1, seed=2)[0]\n"
            "exp = dv.DecomCAM(m, n_components=3)(s.image, 'a photo of a ' + s.objects[0].label)\n"
            "assert float(exp.saliency.sum()) > 0\n"
            "print(sorted(k for k in ('open_clip', 'torchvision', 'torch._dynamo', 'triton') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
