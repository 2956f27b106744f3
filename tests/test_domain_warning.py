"""Maps that cannot mean anything say so: a bundled (PartsWorld) model shown a photo or a drawing, and a model with
random weights (`decomviz.models.domain`, `decomviz.viz.caveats`)."""
import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import decomviz as dv
from decomviz.data import PartsWorld
from decomviz.images import resize_center_crop
from decomviz.models.domain import looks_like_partsworld, random_weights, trained_on_partsworld


def _view(im):
    return resize_center_crop(im.convert("RGB"), (224, 224))


def _photo(name):
    from sklearn.datasets import load_sample_image
    return Image.fromarray(load_sample_image(name))


def _drawn_house():
    im = Image.new("RGB", (300, 240), (135, 190, 235))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 180, 300, 240], fill=(90, 160, 70))
    d.rectangle([90, 110, 210, 200], fill=(200, 60, 50))
    d.polygon([(80, 110), (150, 50), (220, 110)], fill=(120, 70, 40))
    d.rectangle([135, 150, 165, 200], fill=(60, 60, 200))
    return im


def _line_drawing():
    im = Image.new("RGB", (224, 224), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.rectangle([60, 100, 160, 190], outline=(0, 0, 0), width=3)
    d.polygon([(50, 100), (110, 40), (170, 100)], outline=(0, 0, 0))
    return im


def _jpeg(im, quality):
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_partsworld_scenes_look_like_partsworld_at_any_size_and_as_jpeg():
    scenes = [s.image for s in PartsWorld(40, seed=3, n_objects=(1, 3))]
    scenes += [s.image for s in PartsWorld(3, seed=9, size=448)]
    scenes += [_jpeg(scenes[0], 85), _jpeg(scenes[1], 75), scenes[2].resize((160, 160), Image.BICUBIC)]
    missed = [i for i, im in enumerate(scenes) if not looks_like_partsworld(_view(im))]
    assert missed == []


@pytest.mark.parametrize("make", [lambda: _photo("china.jpg"), lambda: _photo("flower.jpg"), _drawn_house,
                                  _line_drawing, lambda: Image.new("RGB", (224, 224), (128, 128, 128)),
                                  lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3),
                                                                                            dtype=np.uint8))],
                         ids=["china", "flower", "drawn-house", "line-drawing", "flat-grey", "noise"])
def test_photos_and_drawings_do_not_look_like_partsworld(make):
    assert not looks_like_partsworld(_view(make()))


def test_crops_of_the_sample_photos_do_not_look_like_partsworld():
    for name in ("china.jpg", "flower.jpg"):
        im = _photo(name)
        w, h = im.size
        for box in [(0, 0, w // 2, h // 2), (w // 2, h // 2, w, h), (w // 4, 0, 3 * w // 4, h)]:
            assert not looks_like_partsworld(_view(im.crop(box))), (name, box)


@pytest.fixture(scope="module")
def parts_rn():
    return dv.load_model("parts-rn", device="cpu")


def test_bundled_model_warns_on_a_photo_and_says_what_to_load(parts_rn):
    assert trained_on_partsworld(parts_rn) and not random_weights(parts_rn)
    scene = PartsWorld(1, seed=4)[0].image
    with pytest.warns(UserWarning, match=r"Image 1 does not look like a PartsWorld scene.*pretrained='openai'"):
        exp = dv.GradCAM(parts_rn)([scene, _photo("china.jpg")], ["a photo of a house", "a photo of a car"])
    assert exp.flags["off_domain"].tolist() == [[False, False], [True, True]]
    assert not exp.flags["random_weights"].any()


def test_bundled_model_does_not_warn_on_partsworld_scenes(parts_rn):
    scenes = [s.image for s in PartsWorld(3, seed=5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        exp = dv.GradCAM(parts_rn)(scenes, "a photo of a house")
    assert not exp.flags["off_domain"].any()


def test_random_weights_are_flagged_on_every_map_and_warned_once(tiny_dirs):
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    model.source = f"open_clip:{model.name}:random-init"   # as load_model(name, pretrained=None) marks it
    assert random_weights(model) and not trained_on_partsworld(model)
    img = np.full((64, 64, 3), 120, np.uint8)
    with pytest.warns(UserWarning, match="random weights.*checkpoint="):
        exp = dv.GradCAM(model)(img, ["a", "b"])
    assert exp.flags["random_weights"].all() and "off_domain" not in exp.flags
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = dv.GradCAM(model)(img, "a")   # warned once per model
    assert again.flags["random_weights"].all()


def test_flags_survive_save_and_load(parts_rn, tmp_path):
    with pytest.warns(UserWarning):
        exp = dv.GradCAM(parts_rn)(_drawn_house(), "a photo of a house")
    exp.save(tmp_path / "e.npz")
    back = dv.Explanation.load(tmp_path / "e.npz")
    assert torch.equal(back.flags["off_domain"], exp.flags["off_domain"]) and bool(back.flags["off_domain"].all())


def test_cli_explain_on_a_photo_warns_and_the_report_says_so_at_the_top(tmp_path, capsys):
    from decomviz.apps.cli import main
    photo = tmp_path / "china.jpg"
    _photo("china.jpg").save(photo)
    out = tmp_path / "report.html"
    assert main(["explain", str(photo), "--prompt", "a temple", "--compare", "", "--device", "cpu",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: The image does not look like a PartsWorld scene" in err and "pretrained='openai'" in err
    page = out.read_text(encoding="utf-8")
    assert page.index('class="caveat"') < page.index("<h2>")


def test_explorer_and_figures_mark_a_photo(parts_rn):
    from decomviz.widgets import Explorer
    ex = Explorer(parts_rn, n_scenes=1, prompts=["a photo of a house"])
    assert "not look like a PartsWorld scene" not in ex.status_text
    ex.set_image(np.asarray(_photo("flower.jpg")), name="flower")
    assert "not look like a PartsWorld scene" in ex.status_text
    with pytest.warns(UserWarning):
        ex.run(wait=True)
    assert "not look like a PartsWorld scene" in ex.status_text
    assert "NOT A PARTSWORLD SCENE" in ex.figures[0].layout.title.text
    assert "PartsWorld" in ex.results.children[0].value   # the banner above the maps


def test_scrubber_and_step_through_say_so_above_their_maps(parts_rn):
    from decomviz.widgets import ComponentScrubber, StepThrough
    with pytest.warns(UserWarning):
        exp = dv.DecomCAM(parts_rn, n_components=4)(_photo("china.jpg"), ["a house", "a car"])
    assert "not look like a PartsWorld scene" in ComponentScrubber(exp, model=parts_rn)._title_html()
    assert "not look like a PartsWorld scene" in StepThrough(exp).children[0].value
