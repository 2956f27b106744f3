"""Our Grad-CAM, Grad-CAM++ and Score-CAM agree with the reference `grad-cam` package on the same target."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import decomviz as dv
from tests.conftest import make_image

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam", reason="grad-cam is a dev dependency: pip install -e .[dev]")


class EmbeddingModel(torch.nn.Module):
    """What the grad-cam package needs: a module mapping images to (normalised) outputs."""

    def __init__(self, clip):
        super().__init__()
        self.net = clip.model
        self.encode = clip.tower.encode_image  # open_clip's encode_image, or a Hugging Face model's features

    def forward(self, x):
        return F.normalize(self.encode(x).float(), dim=-1)


def _reference(cls_name, model, layer, x, text, reshape=None):
    cls = getattr(pytorch_grad_cam, cls_name)
    wrapper = EmbeddingModel(model)
    kwargs = {"reshape_transform": reshape} if reshape else {}
    cam = cls(model=wrapper, target_layers=[model.module(layer)], **kwargs)
    if cls_name == "ScoreCAM":
        cam.batch_size = 64
    target = lambda out: (out * text).sum()
    with cam:
        return cam(input_tensor=x.clone().requires_grad_(True), targets=[target] * len(x))


def _vit_reshape(model):
    def reshape(t):  # (B, N, D) -> (B, D, h, w), dropping the class token
        B, N, D = t.shape
        side = int(round((N - 1) ** 0.5))
        return t[:, 1:].reshape(B, side, side, D).permute(0, 3, 1, 2)
    return reshape


def _corr(a, b):
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


@pytest.mark.parametrize("ours,theirs", [(dv.GradCAM, "GradCAM"), (dv.GradCAMPlusPlus, "GradCAMPlusPlus"),
                                         (dv.ScoreCAM, "ScoreCAM")])
def test_agrees_with_grad_cam_package_rn(tiny_rn, ours, theirs):
    images = [make_image(4), make_image(5)]
    prompt = "a red circle"
    exp = ours(tiny_rn, batch_size=64)(images, prompt)
    x = tiny_rn.prepare(images).tensor
    ref = _reference(theirs, tiny_rn, tiny_rn.default_layer, x, tiny_rn.encode_text([prompt])[0])
    for b in range(2):
        assert _corr(exp.saliency[b, 0], ref[b]) > 0.99, (ours.__name__, b)


@pytest.mark.parametrize("ours,theirs", [(dv.GradCAM, "GradCAM"), (dv.GradCAMPlusPlus, "GradCAMPlusPlus")])
def test_agrees_with_grad_cam_package_vit(tiny_vit, ours, theirs):
    images = [make_image(6)]
    prompt = "a blue square"
    exp = ours(tiny_vit)(images, prompt)
    x = tiny_vit.prepare(images).tensor
    ref = _reference(theirs, tiny_vit, tiny_vit.default_layer, x, tiny_vit.encode_text([prompt])[0],
                     reshape=_vit_reshape(tiny_vit))
    assert _corr(exp.saliency[0, 0], ref[0]) > 0.99


def test_gradcam_on_rn50_agrees(rn50):
    img = make_image(7, 224, 224)
    exp = dv.GradCAM(rn50)(img, "a dog")
    x = rn50.prepare(img).tensor
    ref = _reference("GradCAM", rn50, "visual.layer4", x, rn50.encode_text(["a dog"])[0])
    assert _corr(exp.saliency[0, 0], ref[0]) > 0.99


def _tokens_reshape(prefix):
    def reshape(t):  # (B, N, D) -> (B, D, h, w), dropping the `prefix` leading tokens
        B, N, D = t.shape
        side = int(round((N - prefix) ** 0.5))
        return t[:, prefix:].reshape(B, side, side, D).permute(0, 3, 1, 2)
    return reshape


@pytest.mark.parametrize("family,prefix", [("timm-siglip", 0), ("hf-clip", 1)])
def test_gradcam_agrees_on_timm_siglip_and_hf_clip(family, prefix):
    """The adapters' grid (prefix tokens, layout) and encoders match the reference given the same layer, target
    and reshape: median correlation over images > 0.99."""
    import warnings
    from tests.tower_zoo import char_tokenizer, hf_model, open_clip_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "hf-clip":
            pytest.importorskip("transformers")
            model = dv.load_model(hf_model("clip"), tokenizer=char_tokenizer, device="cpu")
        else:
            model = dv.load_model(open_clip_model(family), device="cpu")
    images = [make_image(s) for s in range(8, 14)]
    prompt = "a red circle"
    exp = dv.GradCAM(model)(images, prompt)
    x = model.prepare(images).tensor
    ref = _reference("GradCAM", model, model.default_layer, x, model.encode_text([prompt])[0],
                     reshape=_tokens_reshape(prefix))
    corrs = [_corr(exp.saliency[b, 0], ref[b]) for b in range(len(images))]
    assert float(np.median(corrs)) > 0.99, corrs
