"""Targets beyond one prompt per column: directions in the embedding space, and image i with prompt i."""
import pytest
import torch

import decomviz as dv


def test_a_prompt_as_a_target_gives_the_prompts_explanation(tiny_rn, images):
    e = tiny_rn.encode_text(["a red circle"])[0]
    for method in ("gradcam", "decomcam"):
        cam = dv.make_method(method, tiny_rn, **({"n_components": 3} if method == "decomcam" else {}))
        by_text = cam(images, ["a red circle"])
        by_vector = cam(images, [dv.Target("red circle, as a vector", e)])
        assert by_vector.prompts == ["red circle, as a vector"]
        assert torch.allclose(by_text.saliency, by_vector.saliency, atol=1e-5)
        assert torch.allclose(by_text.base_score, by_vector.base_score, atol=1e-6)


def test_contrast_target_scores_a_minus_b(tiny_rn, images):
    t = dv.contrast_target(tiny_rn, "a red circle", "a blue square")
    assert t.name == "a red circle but not a blue square"
    exp = dv.GradCAM(tiny_rn)(images, [t, "a red circle", "a blue square"])
    s = exp.base_score
    assert torch.allclose(s[:, 0], s[:, 1] - s[:, 2], atol=1e-5)


def test_image_target_scores_the_similarity_to_a_reference_image(tiny_rn, images):
    t = dv.image_target(tiny_rn, images[0])
    exp = dv.GradCAM(tiny_rn)(images, [t])
    assert exp.base_score[0, 0] == pytest.approx(1.0, abs=1e-4)        # an image is its own best match
    assert bool((exp.base_score[1:, 0] < exp.base_score[0, 0]).all())


def test_bad_targets_are_refused_with_the_reason(tiny_rn, images):
    with pytest.raises(ValueError, match="one finite float vector"):
        dv.Target("x", torch.zeros(2, 3))
    with pytest.raises(ValueError, match="embedding size"):
        dv.GradCAM(tiny_rn)(images, [dv.Target("short", torch.ones(3)), "a red circle"])


def test_pairwise_explains_image_i_with_prompt_i(tiny_rn, images):
    cam = dv.GradCAM(tiny_rn)
    prompts = ["a red circle", "a blue square", "a red circle"][: len(images)]
    pairs = cam.pairwise(list(images), prompts)
    grid = cam(list(images), sorted(set(prompts)))
    assert len(pairs) == len(prompts)
    for i, (exp, p) in enumerate(zip(pairs, prompts)):
        assert exp.prompts == [p] and exp.saliency.shape[:2] == (1, 1)
        t = grid.prompts.index(p)
        assert torch.allclose(exp.saliency[0, 0], grid.saliency[i, t], atol=1e-5)
    with pytest.raises(ValueError, match="one prompt per image"):
        cam.pairwise(list(images), prompts[:1] + prompts)


def test_a_function_target_equal_to_a_prompt_gives_its_explanation(tiny_rn, images):
    e = tiny_rn.encode_text(["a red circle"])[0]
    as_function = dv.Target("red circle, as a function", fn=lambda emb: emb @ e.to(emb))
    for method in ("gradcam", "decomcam", "scorecam"):
        cam = dv.make_method(method, tiny_rn, **({"n_components": 3} if method == "decomcam" else {}))
        exp = cam(images, ["a red circle", as_function, "a blue square"])      # mixed with prompts in one call
        assert exp.prompts[1] == "red circle, as a function"
        # the same scores up to float order (a matrix-vector product against a column of a matrix product);
        # DecomCAM's normalised weights turn 1e-7 in a score into up to 3e-4 in a map, depending on threads
        assert torch.allclose(exp.saliency[:, 0], exp.saliency[:, 1], atol=2e-3), method
        assert torch.allclose(exp.base_score[:, 0], exp.base_score[:, 1], atol=1e-6)


def test_any_target_is_a_smooth_maximum_and_explains_the_best_prompt(tiny_rn, images):
    prompts = ["a red circle", "a blue square"]
    t = dv.any_target(tiny_rn, prompts, sharpness=50.0)
    assert t.name == "a red circle or a blue square" and t.fn is not None
    exp = dv.GradCAM(tiny_rn)(images, [t, *prompts])
    cos = exp.base_score[:, 1:]
    expect = torch.logsumexp(50.0 * cos, dim=1) / 50.0
    assert torch.allclose(exp.base_score[:, 0], expect, atol=1e-5)
    assert bool((exp.base_score[:, 0] >= cos.max(1).values - 1e-6).all())
    # a very sharp maximum has the gradient, hence the Grad-CAM map, of whichever prompt matches best
    sharp = dv.GradCAM(tiny_rn)(images, [dv.any_target(tiny_rn, prompts, sharpness=1e5), *prompts])
    for b in range(len(images)):
        best = 1 + int(sharp.base_score[b, 1:].argmax())
        assert torch.allclose(sharp.saliency[b, 0], sharp.saliency[b, best], atol=1e-3)


def test_a_bare_callable_is_a_target_named_after_it(tiny_rn, images):
    e = tiny_rn.encode_text(["a red circle", "a blue square"])

    def squared_margin(emb):
        return (emb @ e[0].to(emb) - emb @ e[1].to(emb)) ** 2

    exp = dv.DecomCAM(tiny_rn, n_components=3)(images, squared_margin)
    assert exp.prompts == ["squared_margin"]
    cos = torch.stack([tiny_rn.encode_image(list(images)) @ e[k] for k in range(2)], 1)
    assert torch.allclose(exp.base_score[:, 0], (cos[:, 0] - cos[:, 1]) ** 2, atol=1e-5)
    soft = dv.GradCAM(tiny_rn, score="softmax")(images, [squared_margin, "a red circle"])
    assert torch.allclose(soft.base_score.sum(1), torch.ones(len(images)), atol=1e-5)


def test_a_function_target_with_a_wrong_output_says_what_it_must_return(tiny_rn, images):
    with pytest.raises(ValueError, match=r"one score per image \(N,\)"):
        dv.GradCAM(tiny_rn)(images, [dv.Target("wrong", fn=lambda emb: emb)])
    with pytest.raises(ValueError, match="either a vector .* or fn="):
        dv.Target("both", torch.ones(3), fn=lambda emb: emb[:, 0])
    with pytest.raises(ValueError, match="either a vector"):
        dv.Target("neither")


def test_function_targets_survive_chunking_over_prompts(tiny_rn, images, monkeypatch):
    from decomviz.methods import base, chunking
    monkeypatch.setattr(chunking, "PROMPTS_PER_PASS", 2)
    monkeypatch.setattr(base, "PROMPTS_PER_PASS", 2)
    e = tiny_rn.encode_text(["a red circle"])[0]
    targets = ["a blue square", "a green dot", dv.Target("f", fn=lambda emb: emb @ e.to(emb)), "a red circle",
               "a yellow star"]
    for score in ("cosine", "softmax"):
        exp = dv.GradCAM(tiny_rn, score=score)(images, targets)
        whole = dv.GradCAM(tiny_rn, score=score)(images, [t if isinstance(t, str) else e for t in targets[:2]]
                                                 + [dv.Target("f", e)] + targets[3:])
        assert exp.prompts == whole.prompts
        assert torch.allclose(exp.base_score, whole.base_score, atol=1e-5)
        assert torch.allclose(exp.saliency, whole.saliency, atol=1e-4)
