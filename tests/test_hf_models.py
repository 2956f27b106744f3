"""Loading model objects (open_clip, Hugging Face CLIPModel / SiglipModel) with their own or a given tokenizer,
and open_clip names whose tokenizer would come from the hub, offline."""
import warnings

import pytest
import torch

import decomviz as dv
from decomviz.models.taps import hook_count
from tests.conftest import make_image
from tests.tower_zoo import char_tokenizer, hf_model, open_clip_model

transformers = pytest.importorskip("transformers", reason="the Hugging Face extra: pip install -e .[hf]")

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "a", "red", "circle", "blue", "square", "photo", "of"]


def _hf_tokenizer():
    """A real Hugging Face (fast) tokenizer built offline: a word-level vocabulary, an end token appended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 3)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                                bos_token="<s>", eos_token="</s>")


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_model_with_hf_tokenizer(kind):
    model = _quiet(dv.load_model, hf_model(kind), tokenizer=_hf_tokenizer(), device="cpu")
    assert model.kind == f"hf-{kind}"
    if kind == "siglip":
        assert model.resize_mode == "squash" and torch.allclose(model.mean.flatten(), torch.full((3,), 0.5))
    text = model.encode_text(["a red circle", "a photo of a blue square"])
    assert text.shape[0] == 2 and torch.allclose(text.norm(dim=-1), torch.ones(2))
    exp = dv.DecomCAM(model, n_components=2)([make_image(0), make_image(1)], ["a red circle", "a blue square"])
    assert exp.saliency.shape == (2, 2, 64, 64) and torch.isfinite(exp.saliency).all()
    assert hook_count(model.model) == 0


def test_hf_processor_gives_the_preprocessing():
    proc = transformers.CLIPProcessor(
        image_processor=transformers.CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64,
                                                        "width": 64}, image_mean=[0.5, 0.4, 0.3],
                                                        image_std=[0.2, 0.2, 0.2]),
        tokenizer=_hf_tokenizer())
    model = _quiet(dv.load_model, hf_model("clip"), tokenizer=proc, device="cpu")
    assert model.image_size == (64, 64)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.5, 0.4, 0.3]))
    exp = dv.GradCAM(model)(make_image(2), "a red circle")
    assert exp.saliency.shape[-2:] == (64, 64)


def test_hf_model_without_tokenizer_is_refused_briefly():
    with pytest.raises(dv.ModelLoadError, match="tokenizer=") as err:
        dv.load_model(hf_model("siglip"), device="cpu")
    assert len(str(err.value)) < 300


def test_open_clip_object_and_callable_tokenizer():
    net = open_clip_model("openclip-vit")
    model = dv.load_model(net, device="cpu")  # CLIP's own tokenizer (vocabulary 49408)
    ids = model._tokenize(["a red circle"])["input_ids"]
    assert ids.shape == (1, net.context_length)
    import open_clip
    open_clip.set_model_preprocess_cfg(net, {"size": 64, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                                             "interpolation": "bilinear", "resize_mode": "squash"})
    own = dv.load_model(net, device="cpu")  # preprocessing from the model's config
    assert (own.resize_mode, own.interpolation) == ("squash", "bilinear")
    assert torch.allclose(own.std.flatten(), torch.full((3,), 0.25))
    calls = []

    def tok(prompts):
        calls.append(list(prompts))
        return torch.randint(1, 100, (len(prompts), 16))
    other = dv.load_model(net, tokenizer=tok, device="cpu")
    exp = dv.GradCAM(other)(make_image(1), ["a", "b"])
    assert calls == [["a", "b"]] and exp.saliency.shape[:2] == (1, 2)


def test_callable_tokenizer_for_hf_lists_of_ids():
    model = _quiet(dv.load_model, hf_model("clip"), tokenizer=char_tokenizer, device="cpu")
    tokens = model._tokenize(["ab", "abcd"])
    assert tokens["input_ids"].shape == (2, 5) and tokens["attention_mask"].sum().item() == 8
    with pytest.raises(ValueError, match="token ids"):
        dv.load_model(hf_model("clip"), tokenizer=lambda p: "nope", device="cpu").encode_text(["x"])


def test_siglip_name_with_given_tokenizer_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import open_clip
    if "ViT-B-16-SigLIP" not in open_clip.list_models():
        pytest.skip("this open_clip has no ViT-B-16-SigLIP")
    with pytest.raises(dv.ModelLoadError, match="tokenizer=") as err:
        dv.load_model("ViT-B-16-SigLIP", pretrained=None, device="cpu")
    assert len(str(err.value)) < 600
    torch.manual_seed(0)
    model = dv.load_model("ViT-B-16-SigLIP", pretrained=None, device="cpu",
                          tokenizer=lambda p: torch.randint(1, 1000, (len(p), 64)))
    assert model.kind == "timm-vit"
    exp = dv.GradCAM(model)(make_image(3, 224, 224), "a dog")
    assert exp.saliency.shape == (1, 1, 224, 224) and torch.isfinite(exp.saliency).all()
