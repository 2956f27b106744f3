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
