"""`dv.load_model(user_object)` leaves the object as it was: training mode, requires_grad and device; the user's
model still trains, and decomviz explains a copy of it."""
import torch

import decomviz as dv
from tests.tower_zoo import char_tokenizer, hf_model, open_clip_model


def _state(model):
    return (model.training, [p.requires_grad for p in model.parameters()], {p.device for p in model.parameters()},
            [p.detach().clone() for p in model.parameters()])


def _same(a, b):
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and all(torch.equal(x, y) for x, y in zip(a[3], b[3]))


def test_load_model_leaves_an_open_clip_object_as_it_was():
    raw = open_clip_model("openclip-rn").train()
    before = _state(raw)
    wrapped = dv.load_model(raw, device="cpu")
    dv.GradCAM(wrapped)(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy(), "a photo")
    assert _same(before, _state(raw))
    assert raw.training and all(p.requires_grad for p in raw.parameters())
    assert not wrapped.model.training and not any(p.requires_grad for p in wrapped.model.parameters())
    # the user's model still trains: a step changes its weights, not decomviz's copy
    loss = raw.encode_image(torch.randn(2, 3, 64, 64)).pow(2).mean()
    loss.backward()
    with torch.no_grad():
        for p in raw.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert not all(torch.equal(a, b) for a, b in zip(raw.parameters(), wrapped.model.parameters()))


def test_load_model_leaves_a_hugging_face_object_as_it_was():
    raw = hf_model("clip").train()
    before = _state(raw)
    dv.load_model(raw, tokenizer=char_tokenizer, device="cpu")
    assert _same(before, _state(raw))


def test_a_layer_may_be_named_by_the_given_objects_own_module():
    raw = open_clip_model("openclip-rn")
    wrapped = dv.load_model(raw, device="cpu")
    cam = dv.GradCAM(wrapped, layer=raw.visual.layer4)
    assert cam.layer == "visual.layer4"
