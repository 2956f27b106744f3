"""Widget logic without a browser: set values, press buttons, check what the figures hold."""
from __future__ import annotations

import datetime
import io
import threading
import warnings

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

import decomviz as dv
from decomviz.ops import clip_score, gaussian_blur
from decomviz.viz import steps as F
from decomviz.widgets import ComponentScrubber, Explorer, StepThrough
from decomviz.widgets._common import decode_upload, default_gallery, parse_prompts
from decomviz.methods.registry import METHODS
from decomviz.widgets.explorer import METHOD_LABELS

from .conftest import make_image

K = 10


@pytest.fixture(scope="module")
def exp_rn(tiny_rn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = dv.DecomCAM(tiny_rn, n_components=K)([make_image(1), make_image(0)], ["a house", "a car"])
    # The tiny random model must give a pair with both positive and zero weights, or the checks below are weak
    # (which image does depends on the preprocessing: since decomviz resizes as open_clip does, make_image(1) does).
    w = exp.weights[0, 0]
    assert (w > 0).sum() >= 3 and (w == 0).any(), w
    return exp


@pytest.fixture
def scrubber(exp_rn, tiny_rn):
    return ComponentScrubber(exp_rn, model=tiny_rn, image=0, prompt=0)


def block_means(m, cell: int = 8) -> np.ndarray:
    """What a figure's hover layer holds for a map drawn as a picture: its cell x cell block means."""
    m = np.asarray(m, dtype=np.float64)
    H, W = m.shape
    return m[: H - H % cell, : W - W % cell].reshape(H // cell, cell, W // cell, cell).mean(axis=(1, 3))


def heat(fig: go.FigureWidget, name: str) -> np.ndarray:
    return np.asarray(next(fig.select_traces(selector=dict(name=name))).z, dtype=np.float64)


def expected(exp, components, b=0, t=0, weighting="integration"):
    return exp.combine(components, weighting)[b, t].numpy()


# ------------------------------------------------------------------------------------------ ComponentScrubber
def test_scrubber_starts_with_the_full_saliency(scrubber, exp_rn):
    assert scrubber.selected == list(range(K))
    assert scrubber.slider.value == K and (scrubber.slider.min, scrubber.slider.max) == (0, K)
    np.testing.assert_allclose(heat(scrubber.figure, "combination"), exp_rn.saliency[0, 0].numpy(), atol=1e-4)
    assert len(scrubber.toggles) == K and all(t.value for t in scrubber.toggles)


def test_slider_over_its_whole_range(scrubber, exp_rn):
    seen = []
    for k in [0, *range(1, K + 1), 3, 0]:
        scrubber.slider.value = k  # what the browser does; the callback calls set_k
        z = heat(scrubber.figure, "combination")
        np.testing.assert_allclose(z, expected(exp_rn, range(k)), atol=1e-4, err_msg=f"k={k}")
        assert scrubber.selected == list(range(k))
        assert [t.value for t in scrubber.toggles] == [i < k for i in range(K)]
        colors = list(next(scrubber.figure.select_traces(selector=dict(name="weights"))).marker.color)
        assert [c == F.KEPT_COLOR for c in colors] == [i < k for i in range(K)]
        opac = [next(scrubber.figure.select_traces(selector=dict(name=f"ossm {i}"))).opacity for i in range(K)]
        assert [o == 1.0 for o in opac] == [i < k for i in range(K)]
        seen.append(z.sum())
    assert np.allclose(heat(scrubber.figure, "combination"), 0)  # k = 0: nothing selected, an empty map
    assert len({round(s, 3) for s in seen}) > 3  # the map really changes along the slider


def test_every_toggle(scrubber, exp_rn):
    w = exp_rn.weights[0, 0]
    for k in range(K):
        scrubber.toggles[k].value = False  # as a click would
        rest = [i for i in range(K) if i != k]
        assert scrubber.selected == rest
        z = heat(scrubber.figure, "combination")
        np.testing.assert_allclose(z, expected(exp_rn, rest), atol=1e-4, err_msg=f"without {k}")
        if w[k] > 0:
            assert not np.allclose(z, exp_rn.saliency[0, 0].numpy(), atol=1e-3), f"removing {k} changed nothing"
        assert scrubber.slider.value == (K - 1 if k == K - 1 else K)  # a prefix moves the slider, others keep it
        scrubber.toggles[k].value = True
        np.testing.assert_allclose(heat(scrubber.figure, "combination"), exp_rn.saliency[0, 0].numpy(), atol=1e-4)


def test_toggle_methods_and_buttons(scrubber, exp_rn):
    scrubber.none_button.click()
    assert scrubber.selected == [] and scrubber.slider.value == 0
    scrubber.toggle(2)
    scrubber.toggle(5)
    assert scrubber.selected == [2, 5] and scrubber.slider.value == 0
    # a selection that is not the first k says which components are on, and hides the stale k
    assert scrubber.slider.description == "custom: #3, #6" and scrubber.slider.readout is False
    np.testing.assert_allclose(heat(scrubber.figure, "combination"), expected(exp_rn, [2, 5]), atol=1e-4)
    scrubber.toggle(2, on=False)
    assert scrubber.selected == [5]
    scrubber.set_selected([True] * 3 + [False] * (K - 3))
    assert scrubber.selected == [0, 1, 2] and scrubber.slider.value == 3
    assert scrubber.slider.description == "first k components" and scrubber.slider.readout is True
    scrubber.all_button.click()
    assert scrubber.selected == list(range(K)) and scrubber.slider.value == K
    assert "10 of 10" in scrubber.info.value
    with pytest.raises(IndexError):
        scrubber.toggle(K)
    with pytest.raises(ValueError):
        scrubber.set_k(K + 1)


def test_weighting(scrubber, exp_rn):
    scrubber.set_k(4)
    scrubber.weighting_dropdown.value = "singular"
    np.testing.assert_allclose(heat(scrubber.figure, "combination"), expected(exp_rn, range(4), weighting="singular"),
                               atol=1e-4)
    bars = next(scrubber.figure.select_traces(selector=dict(name="weights")))
    np.testing.assert_allclose(np.asarray(bars.y, float), exp_rn.singular_values[0, 0].numpy(), rtol=1e-5)
    scrubber.set_weighting("uniform")
    np.testing.assert_allclose(heat(scrubber.figure, "combination"), expected(exp_rn, range(4), weighting="uniform"),
                               atol=1e-4)
    with pytest.raises(ValueError):
        scrubber.set_weighting("median")


def _recompute(model, exp, mask, t=0, b=0):
    """The measure button's score, computed independently: M x + (1 - M) r through the model."""
    x = model.prepare(exp.images[b].numpy()).tensor
    r = gaussian_blur(x, exp.params["blur_sigma"] * x.shape[-1] / 224)
    M = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    with torch.no_grad():
        emb = model.embed(M * x + (1 - M) * r)
    return float(clip_score(emb, model.encode_text(exp.prompts), exp.params["score"], model.logit_scale)[0, t])


def test_measure_button(scrubber, exp_rn, tiny_rn):
    assert not scrubber.measure_button.disabled
    scrubber.set_k(3)
    scrubber.measure_button.click()
    first = scrubber.last_measure
    assert first is not None and "decomviz-measured" in scrubber.result.value
    assert f"{first['score']:.4f}" in scrubber.result.value
    assert f"{float(exp_rn.base_score[0, 0]):.4f}" in scrubber.result.value
    assert f"{float(exp_rn.reference_score[0, 0]):.4f}" in scrubber.result.value
    assert first["score"] == pytest.approx(_recompute(tiny_rn, exp_rn, expected(exp_rn, range(3))), abs=1e-6)
    assert first["base_score"] == pytest.approx(float(exp_rn.base_score[0, 0]))

    # the selection changes: the shown result is marked stale, and a new measure gives a new score
    scrubber.set_k(K)
    assert "press measure again" in scrubber.result.value
    scrubber.measure_button.click()
    second = scrubber.last_measure
    assert second["score"] != first["score"]
    assert second["score"] == pytest.approx(_recompute(tiny_rn, exp_rn, exp_rn.saliency[0, 0].numpy()), abs=1e-6)
    assert f"{second['score']:.4f}" in scrubber.result.value and "again" not in scrubber.result.value


def test_measure_single_components_match_decomcam(scrubber, exp_rn):
    """One component with w > 0: the mask is DecomCAM's M_k, so the score is the recorded s(x_k, t);
    one with w = 0: the map is empty, the input is the blurred reference, so the score is s(r, t)."""
    w = exp_rn.weights[0, 0]
    on = int(w.argmax())
    off = int((w == 0).nonzero()[0, 0])
    scrubber.set_selected([on])
    assert scrubber.measure()["score"] == pytest.approx(float(exp_rn.masked_scores[0, 0, on]), abs=2e-6)
    scrubber.set_selected([off])
    assert scrubber.measure()["score"] == pytest.approx(float(exp_rn.reference_score[0, 0]), abs=2e-6)


@pytest.mark.parametrize("variant", ["decomcam", "decomcam-authors", "decomcam-feature"])
def test_measure_gives_decomcams_own_weights_for_each_component(tiny_rn, variant):
    """Measuring each component alone goes through DecomCAM's own scoring with the recorded knobs (here the
    authors' element-wise max blend and raw contributions, or feature integration at the layer): the scores are
    the explanation's masked scores and, through `integration_weights`, its weights."""
    from decomviz.methods.decomcam import integration_weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = dv.make_method(variant, tiny_rn, n_components=4)(make_image(0), ["a house", "a car"])
    s = ComponentScrubber(exp, model=tiny_rn, prompt=1, weighting="uniform")
    d = []
    for k in range(exp.n_components):
        s.set_selected([k])
        out = s.measure()
        # the image is re-read from the explanation's uint8 pixels: scores agree to float32 rounding
        assert out["score"] == pytest.approx(float(exp.masked_scores[0, 1, k]), abs=2e-5), k
        assert out["contribution"] == pytest.approx(float(exp.contributions[0, 1, k]), abs=2e-5), k
        d.append(out["contribution"])
    assert s.scorer().blend == exp.params["blend"] and s.scorer().integration == exp.params["integration"]
    p = exp.params
    w = integration_weights(torch.tensor([d]), p["weight_threshold"], p["weight_norm"])[0]
    # w = d / max d: an error of 2e-5 in d is 2e-5 / max d in w (max d is about 1e-2 on this tiny model)
    tol = 2e-5 / max(abs(float(exp.contributions[0, 1].max())), 1e-3) * 4
    assert torch.allclose(w, exp.weights[0, 1], atol=tol), (w, exp.weights[0, 1], tol)
    assert float(exp.weights[0, 1].max()) > 0


def test_measure_other_pair(exp_rn, tiny_rn):
    s = ComponentScrubber(exp_rn, model=tiny_rn, image=1, prompt="a car")
    assert s.prompt_index == 1
    np.testing.assert_allclose(heat(s.figure, "combination"), exp_rn.saliency[1, 1].numpy(), atol=1e-4)
    s.set_k(2)
    assert s.measure()["score"] == pytest.approx(_recompute(tiny_rn, exp_rn, expected(exp_rn, range(2), 1, 1), t=1, b=1),
                                                 abs=1e-6)


def test_no_model_disables_measure(exp_rn):
    s = ComponentScrubber(exp_rn)
    assert s.measure_button.disabled
    assert "model" in s.measure_button.tooltip
    s.set_k(2)  # scrubbing still works
    np.testing.assert_allclose(heat(s.figure, "combination"), expected(exp_rn, range(2)), atol=1e-4)
    with pytest.raises(RuntimeError, match="model"):
        s.measure()


def test_measure_error_is_shown(exp_rn, tiny_vit):
    s = ComponentScrubber(exp_rn, model=tiny_vit)  # a model with another input size
    s.measure_button.click()
    assert "Could not measure" in s.result.value and not s.measure_button.disabled


def test_scrubber_rejects_baselines(tiny_rn):
    exp = dv.GradCAM(tiny_rn)(make_image(0), "a house")
    with pytest.raises(ValueError, match="DecomCAM"):
        ComponentScrubber(exp)
    with pytest.raises(ValueError, match="DecomCAM"):
        StepThrough(exp)


def test_scrubber_on_vit(tiny_vit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = dv.DecomCAM(tiny_vit, n_components=4)(make_image(2), "a dog")
    s = ComponentScrubber(exp, model=tiny_vit)
    for k in range(exp.n_components + 1):
        s.set_k(k)
        np.testing.assert_allclose(heat(s.figure, "combination"), expected(exp, range(k)), atol=1e-4)
    s.measure()


# ------------------------------------------------------------------------------------------ StepThrough
def test_stepthrough_walks_every_step(exp_rn):
    st = StepThrough(exp_rn, image=1, prompt=1)
    keys = [s.key for s in st.steps]
    assert keys == ["input", "alpha", "channels", "svd", "ossms", "reference", "masked", "contributions", "final"]
    assert st.previous_button.disabled and not st.next_button.disabled
    for i in range(len(keys)):
        assert st.step == i and st.dropdown.value == i
        assert st.current.sentence and st.current.sentence.strip().endswith(".")
        assert st.current.title in st.sentence.value
        assert isinstance(st.figure, go.FigureWidget) and len(st.figure.data) > 0
        assert st.view.children == (st.figure,)
        st.next_button.click()
    assert st.step == len(keys) - 1 and st.next_button.disabled
    st.next()
    assert st.step == len(keys) - 1
    st.previous_button.click()
    assert st.step == len(keys) - 2
    st.dropdown.value = 1
    assert st.step == 1 and st.current.key == "alpha"
    st.go_to("final")
    assert st.step == len(keys) - 1
    with pytest.raises(KeyError):
        st.go_to("nope")


def test_stepthrough_figures_hold_the_explanation(exp_rn):
    b, t = 1, 1
    st = StepThrough(exp_rn, image=b, prompt=t)
    alpha = st._figure(st.steps.index(next(s for s in st.steps if s.key == "alpha")))
    bars = alpha.data[0]
    np.testing.assert_allclose(np.sort(np.asarray(bars.y))[::-1], np.sort(exp_rn.alpha[b, t].numpy())[::-1], rtol=1e-6)
    kept = set(exp_rn.channels[b, t].tolist())
    red = {int(c) for c, col in zip(bars.customdata, bars.marker.color) if col == F.KEPT_COLOR}
    assert red == kept
    st.go_to("svd")
    np.testing.assert_allclose(np.asarray(st.figure.data[0].y), exp_rn.singular_values[b, t].numpy(), rtol=1e-6)
    st.go_to("contributions")
    np.testing.assert_allclose(np.asarray(st.figure.data[0].y), exp_rn.contributions[b, t].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(st.figure.data[1].y), exp_rn.weights[b, t].numpy(), rtol=1e-6)
    st.go_to("ossms")
    grids = [tr for tr in st.figure.data if isinstance(tr, go.Heatmap)]
    assert len(grids) == K
    np.testing.assert_allclose(np.asarray(grids[3].z), exp_rn.ossms_lowres[b, t, 3].numpy(), rtol=1e-6)
    st.go_to("masked")
    assert sum(isinstance(tr, go.Image) for tr in st.figure.data) == K
    st.go_to("final")
    # the map is drawn as a picture; the hover layer holds its 8 x 8 px block means
    np.testing.assert_allclose(heat(st.figure, "saliency"), block_means(exp_rn.saliency[b, t]), atol=2e-3)
    assert any(isinstance(tr, go.Image) and tr.source.startswith("data:image/webp") for tr in st.figure.data)


def test_masked_inputs_rebuilt_in_pixel_space(exp_rn):
    imgs = F.masked_input_pixels(exp_rn, 0, 1)
    x = exp_rn.images[0].float()
    r = exp_rn.reference_images[0].float()
    for k in (0, 4):
        o = exp_rn.ossms[0, 1, k]
        m = ((o - o.min()) / (o.max() - o.min()))[..., None]
        np.testing.assert_allclose(imgs[k], (m * x + (1 - m) * r).round().numpy(), atol=1)


def test_stepthrough_without_integration(tiny_rn):
    exp = dv.DecomCAM(tiny_rn, n_components=4, integration="none")(make_image(0), "a house")
    st = StepThrough(exp)
    assert [s.key for s in st.steps] == ["input", "alpha", "channels", "svd", "ossms", "final"]
    for _ in st.steps:
        st.next()
        assert len(st.figure.data) > 0


# ------------------------------------------------------------------------------------------ Explorer
def test_prompt_parsing():
    assert parse_prompts("a house, a car") == ["a house", "a car"]
    assert parse_prompts("a house, red\n a car \n\n") == ["a house, red", "a car"]
    assert parse_prompts(["a", " b ", ""]) == ["a", "b"]
    for bad in ("", "  \n ,, ", None, []):
        with pytest.raises(ValueError, match="at least one prompt"):
            parse_prompts(bad)


def test_gallery_has_scenes_and_sample_photos():
    g = default_gallery(n_scenes=2)
    names = list(g)
    assert names[0].startswith("PartsWorld 0") and g[names[0]]["prompts"]
    pytest.importorskip("skimage")
    assert any(n.startswith("scikit-image") for n in names)
    assert any(n.startswith("scikit-learn") for n in names)
    for n in names:
        img = np.asarray(g[n]["load"]())
        assert img.ndim == 3 and img.dtype == np.uint8


@pytest.fixture
def explorer(tiny_rn):
    return Explorer(tiny_rn, n_scenes=2)


@pytest.mark.parametrize("method", list(METHOD_LABELS))
def test_explorer_runs_each_method(explorer, method):
    from decomviz.methods.registry import applies
    if not applies(method, explorer.model):
        pytest.skip("an attention method on a ResNet; tests/test_transformer_methods.py runs it in an Explorer")
    explorer.set_image(make_image(3), name="blobs")
    explorer.set_prompts("a house\na car")
    explorer.set_method(method)
    explorer.set_knobs(n_components=4, top_channels=64)
    out = explorer.run(wait=True)
    assert out is not None, explorer.status_text
    exp = explorer.explanation
    spec = METHODS[method]
    assert list(out) == [method] and exp.params["method"] == spec.cls.method
    assert all(exp.params[k] == v for k, v in spec.fixed.items())
    assert exp.prompts == ["a house", "a car"]
    assert "done" in explorer.status_text and explorer.progress.value == explorer.progress.max
    fig = explorer.figures[0]
    np.testing.assert_allclose(heat(fig, "saliency"), block_means(exp.saliency[0, 0]), atol=1e-3)
    if method == "decomcam":
        assert exp.n_components == 4 and exp.channels.shape[-1] == 64
        assert len(explorer.figures) == 2  # + the spectrum
    # a second prompt on show
    assert explorer.prompt_dropdown.layout.display is None
    explorer.prompt_dropdown.value = 1
    np.testing.assert_allclose(heat(explorer.figures[0], "saliency"), block_means(exp.saliency[0, 1]),
                               atol=1e-3)


def test_explorer_side_by_side_and_knobs(explorer, tiny_rn):
    explorer.image_dropdown.value = list(explorer.gallery)[1]
    assert explorer.prompts == explorer.gallery[list(explorer.gallery)[1]]["prompts"]  # suggested prompts
    explorer.set_compare(["gradcam", "eigencam", "decomcam"])
    explorer.set_knobs(layer="visual.layer3", n_components=3, top_channels=20, blur_sigma=5.0, center=False,
                       sign="both", score="logit")
    explorer.run_button.click()  # runs in the background
    explorer.wait(120)
    assert "done" in explorer.status_text, explorer.status_text
    assert list(explorer.explanations) == ["decomcam", "gradcam", "eigencam"]
    p = explorer.explanation.params
    assert (p["layer"], p["n_components"], p["top_channels"], p["blur_sigma"], p["center"], p["sign"], p["score"]) == \
        ("visual.layer3", 3, 20, 5.0, False, "both", "logit")
    comparison = explorer.figures[-1]
    assert sum(isinstance(tr, go.Heatmap) for tr in comparison.data) == 3
    scrub = explorer.scrubber()
    assert isinstance(scrub, ComponentScrubber) and scrub.n_components == 3


def test_explorer_bad_input(explorer):
    assert explorer.run(wait=True) is not None  # the default image and suggested prompts work
    good = explorer.explanations
    explorer.set_prompts("  \n , ")
    assert explorer.run(wait=True) is None
    assert "at least one prompt" in explorer.status_text and explorer.explanations is good
    assert not explorer.run_button.disabled

    before = explorer.image.copy()
    assert explorer.set_upload(({"name": "notes.txt", "content": memoryview(b"not an image")},)) is False
    assert "notes.txt" in explorer.status_text and "image" in explorer.status_text
    assert np.array_equal(explorer.image, before)
    assert explorer.set_upload(({"name": "empty.png", "content": b""},)) is False
    assert "empty" in explorer.status_text
    assert explorer.set_image(np.zeros((4, 5, 7))) is False
    assert "Cannot use that image" in explorer.status_text and np.array_equal(explorer.image, before)

    buf = io.BytesIO()
    Image.fromarray(make_image(5, 90, 120)).save(buf, format="PNG")
    explorer.upload.value = ({"name": "blobs.png", "type": "image/png", "size": len(buf.getvalue()),
                              "content": memoryview(buf.getvalue()),
                              "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert explorer.image.shape == (90, 120, 3) and "blobs.png" in explorer.image_name
    assert len(explorer.upload.value) == 1 and "blobs.png" in explorer.upload.description  # counter reads 1
    assert explorer.image_dropdown.value == explorer.image_name  # the dropdown shows the image in use
    explorer.set_prompts("a house, a car")
    assert explorer.run(wait=True) is not None and explorer.explanation.prompts == ["a house", "a car"]


def test_explorer_engine_error_is_shown(explorer, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("out of memory (simulated)")

    original = explorer._compute
    monkeypatch.setattr(explorer, "_compute", boom)
    assert explorer.run(wait=True) is None
    assert "failed" in explorer.status_text and "simulated" in explorer.status_text
    assert explorer.progress.bar_style == "danger"
    monkeypatch.setattr(explorer, "_compute", original)
    assert explorer.run(wait=True) is not None and "done" in explorer.status_text


def test_explorer_new_run_supersedes_old(explorer):
    """Run 1 is held inside the engine until run 2 has finished: run 1's results must be dropped."""
    release = threading.Event()
    entered = threading.Event()
    original = explorer._compute

    def slow_first(job):
        if job.generation == 1:
            entered.set()
            release.wait(30)
        return original(job)

    explorer._compute = slow_first
    explorer.set_prompts("a house")
    explorer.run(wait=False)
    first = explorer._thread
    assert entered.wait(30) and explorer.running
    explorer.set_prompts("a car")
    out = explorer.run(wait=True)
    assert out is not None and explorer.explanation.prompts == ["a car"]
    assert "Run 2 done" in explorer.status_text
    release.set()
    first.join(60)
    assert not first.is_alive()
    assert explorer.dropped_runs == 1
    assert explorer.explanation.prompts == ["a car"] and "Run 2 done" in explorer.status_text


def test_decode_upload_variants():
    buf = io.BytesIO()
    Image.fromarray(make_image(0, 20, 30)).convert("RGBA").save(buf, format="PNG")
    name, im = decode_upload({"name": "a.png", "content": memoryview(buf.getvalue())})
    assert name == "a.png" and im.mode == "RGB" and im.size == (30, 20)
    _, im = decode_upload(buf.getvalue())
    assert im.size == (30, 20)
    with pytest.raises(dv.ImageInputError, match="truncated|could not|Could not"):
        decode_upload({"name": "cut.png", "content": buf.getvalue()[:60]})
    with pytest.raises(dv.ImageInputError, match="No file"):
        decode_upload(())


def test_explorer_rejects_non_models():
    with pytest.raises(TypeError, match="CLIPModel"):
        Explorer("RN50")


def test_explorer_bad_knob_is_reported(explorer):
    explorer.set_knobs(top_channels=0)
    assert explorer.run(wait=True) is None
    assert "top_channels" in explorer.status_text
    explorer.set_knobs(top_channels=8, n_components=4)
    assert explorer.run(wait=True) is not None
    with pytest.raises(ValueError, match="knob"):
        explorer.set_knobs(colour="red")
