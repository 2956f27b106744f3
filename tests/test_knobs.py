"""Knobs are declared once: every knob of every registered method reaches it from the command line and from
the Explorer, and the declaration validates the constructor."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import decomviz as dv
from decomviz.apps.cli import build_parser, knobs_from_args, main, make_methods
from decomviz.knobs import Knob
from decomviz.methods.registry import METHODS, all_knobs, applies, route_knobs
from tests.conftest import make_image


def _other_value(knob: Knob, default, model, spec=None):
    """A valid value different from the default."""
    if knob.kind == "layer":
        return next(layer for layer in model.layers if layer != model.default_layer)
    if knob.kind == "choice":   # the first alternative that this method accepts with its fixed knobs
        for c in knob.choices:
            if c == default or (knob.name, c) in INVALID:
                continue
            try:
                if spec is not None:
                    spec.make(model, **NEEDS.get(knob.name, {}), **{knob.name: c})
            except ValueError:   # refused with the variant's fixed knobs (e.g. an SVD sign rule with NMF)
                continue
            return c
        pytest.skip(f"no value of {knob.name} other than {default!r} goes with {spec.name if spec else 'it'}'s "
                    "fixed knobs")
    if knob.kind == "bool":
        return not default
    if knob.kind == "texts":
        return ("a photo of a cat", "a photo of a dog")
    if knob.kind == "int":
        return (knob.auto[1](model) if default is None else default) + 1
    value = default * 2 if knob.high is None or default * 2 < knob.high else default / 2
    return float(value)


def _resolved(knob: Knob, default, model):
    """A default as the method holds it: a knob chosen for the model (None: `Knob.auto`) as chosen."""
    return knob.auto[1](model) if default is None and knob is not None and knob.auto is not None else default


def _cli_tokens(knob: Knob, value):
    if knob.kind == "bool":
        return [knob.option if value else "--no-" + knob.option[2:]]
    if knob.kind == "texts":
        return [token for text in value for token in (knob.option, text)]
    return [knob.option, "none" if value is None else str(value)]


CASES = [(name, knob) for name, spec in METHODS.items() for knob in spec.knobs]
#: knobs that are only valid together with another setting
NEEDS = {"contrast": {"score": "softmax"}}
#: values refused by a variant's fixed knobs (feature integration cannot use the element-wise max blend)
INVALID = {("integration", "feature")}


def test_every_method_declares_its_knobs_with_defaults():
    for name, spec in METHODS.items():
        assert set(spec.knobs) == set(spec.defaults), name
        for knob in spec.knobs.values():
            assert len(knob.help) > 10, (name, knob.name)


@pytest.mark.parametrize("method,knob_name", CASES)
def test_every_knob_reaches_its_method_from_the_command_line(method, knob_name, tiny_rn, request):
    if not applies(method, tiny_rn):  # the attention methods need a transformer tower
        tiny_rn = request.getfixturevalue("tiny_vit")
    spec = METHODS[method]
    knob = spec.knobs[knob_name]
    value = _other_value(knob, spec.defaults[knob_name], tiny_rn, spec)
    extra = [t for k, v in NEEDS.get(knob_name, {}).items() for t in _cli_tokens(spec.knobs[k], v)]
    args = build_parser().parse_args(["explain", "img.png", "--prompt", "x", "--method", method, "--compare", "",
                                      *_cli_tokens(knob, value), *extra, "--out", "e.npz"])
    cam = make_methods([method], tiny_rn, knobs_from_args(args))[method]
    assert cam.get_params()[knob_name] == value
    for other, v in cam.get_params().items():   # and nothing else moved
        if other != knob_name and other not in NEEDS.get(knob_name, {}):
            expected = _resolved(spec.knobs.get(other), spec.fixed.get(other, spec.defaults.get(other)), tiny_rn)
            assert v == (tiny_rn.default_layer if other == "layer" else expected), other


@pytest.fixture(scope="module")
def explorer(tiny_dirs):
    from decomviz.widgets import Explorer
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    return Explorer(model, n_scenes=1)


@pytest.fixture(scope="module")
def explorer_vit(tiny_dirs):
    from decomviz.widgets import Explorer
    return Explorer(dv.load_model(checkpoint=tiny_dirs["vit"], device="cpu"), n_scenes=1)


@pytest.mark.parametrize("method,knob_name", CASES)
def test_every_knob_reaches_its_method_from_the_explorer(method, knob_name, explorer, request):
    if not applies(method, explorer.model):  # the attention methods need a transformer tower
        explorer = request.getfixturevalue("explorer_vit")
    spec = METHODS[method]
    knob = spec.knobs[knob_name]
    value = _other_value(knob, spec.defaults[knob_name], explorer.model, spec)
    try:
        explorer.set_knobs(**NEEDS.get(knob_name, {}), **{knob_name: value})
        assert explorer.make_cam(method).get_params()[knob_name] == value
    finally:
        explorer.reset_knobs()


def _python_defaults(method, model):
    params = METHODS[method].make(model).get_params()
    return {k: v for k, v in params.items() if k in METHODS[method].knobs}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_runs_with_its_own_defaults_from_python_the_cli_and_the_explorer(method, explorer, request):
    """A knob that several methods take with different defaults (top_channels: DecomCAM 500, gScoreCAM 300)
    gives each its own, whichever method comes first in the registry, on the command line or in the Explorer."""
    if not applies(method, explorer.model):  # the attention methods need a transformer tower
        explorer = request.getfixturevalue("explorer_vit")
    model = explorer.model
    python = _python_defaults(method, model)
    assert python == {k: (model.default_layer if k == "layer" and v is None else
                          _resolved(METHODS[method].knobs[k], v, model))
                      for k, v in METHODS[method].defaults.items()}
    args = build_parser().parse_args(["explain", "img.png", "--prompt", "x", "--method", method, "--out", "e.npz"])
    cli = make_methods([method], model, knobs_from_args(args))[method].get_params()
    assert {k: cli[k] for k in python} == python
    explorer.reset_knobs()
    for shown in ("decomcam", method, "gscorecam"):       # whichever method the dropdown shows, as main or beside
        explorer.set_method(shown)
        got = explorer.make_cam(method).get_params()
        assert {k: got[k] for k in python} == python, shown
    explorer.set_method("decomcam")


def test_gscorecam_keeps_its_top_channels_beside_decomcam_and_the_help_shows_both(explorer):
    assert METHODS["gscorecam"].defaults["top_channels"] != METHODS["decomcam"].defaults["top_channels"]
    explorer.reset_knobs()
    explorer.set_method("decomcam")
    explorer.set_compare(["gscorecam"])
    assert explorer.make_cam("gscorecam").top_channels == METHODS["gscorecam"].defaults["top_channels"]
    assert explorer.make_cam("decomcam").top_channels == METHODS["decomcam"].defaults["top_channels"]
    explorer.set_method("gscorecam")                       # the widget shows the chosen method's default
    assert explorer.knobs["top_channels"] == METHODS["gscorecam"].defaults["top_channels"]
    explorer.set_knobs(top_channels=64)                    # a value the user sets reaches both
    assert explorer.make_cam("gscorecam").top_channels == explorer.make_cam("decomcam").top_channels == 64
    explorer.set_method("decomcam")
    assert explorer.knobs["top_channels"] == 64            # and survives a change of method
    explorer.reset_knobs()
    explorer.set_compare([])
    parser = build_parser()
    text = " ".join(parser._subparsers._group_actions[0].choices["explain"].format_help().split())
    assert "500 for decomcam" in text and "300 for gscorecam" in text


def test_explorer_has_one_widget_per_knob_with_the_declared_range(explorer):
    assert set(explorer.knob_panel.widgets) == set(all_knobs())
    k = explorer.knob_panel.widgets["n_components"]
    assert (k.min, k.max) == all_knobs()["n_components"].widget[:2]
    explorer.set_method("gradcam")
    assert explorer.knob_panel.widgets["n_components"].disabled and not explorer.knob_panel.widgets["score"].disabled
    explorer.set_method("decomcam")
    assert not explorer.knob_panel.widgets["n_components"].disabled


def test_explain_records_the_knobs_of_a_baseline(tmp_path, tiny_dirs):
    """The bug this registry fixes: --top-channels was dropped on its way to gScoreCAM."""
    image = tmp_path / "img.png"
    Image.fromarray(make_image(0)).save(image)
    out = tmp_path / "e.npz"
    assert main(["explain", str(image), "--prompt", "a red circle", "--checkpoint", str(tiny_dirs["rn"]),
                 "--method", "gscorecam", "--top-channels", "7", "--compare", "", "--out", str(out)]) == 0
    exp = dv.Explanation.load(out)
    assert exp.params["method"] == "gscorecam" and exp.params["top_channels"] == 7
    assert exp.channels.shape[-1] == 7


def test_a_knob_no_chosen_method_takes_is_refused(tmp_path, tiny_dirs, capsys):
    image = tmp_path / "img.png"
    Image.fromarray(make_image(0)).save(image)
    rc = main(["explain", str(image), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--method", "gradcam",
               "--compare", "", "--n-components", "4", "--out", str(tmp_path / "e.npz")])
    assert rc == 2 and "n_components is not a knob of gradcam" in capsys.readouterr().err
    assert not (tmp_path / "e.npz").exists()
    with pytest.raises(ValueError, match="not a knob"):
        route_knobs(["gradcam", "eigencam"], {"top_channels": 3})
    assert route_knobs(["gradcam", "gscorecam"], {"top_channels": 3}) == {"gradcam": {},
                                                                         "gscorecam": {"top_channels": 3}}


def test_fixed_knobs_of_a_variant_cannot_be_overridden(tiny_rn):
    with pytest.raises(ValueError, match="fixes integration='none'"):
        METHODS["decomcam-nointegration"].make(tiny_rn, integration="pixel")
    assert METHODS["decomcam-feature"].make(tiny_rn).integration == "feature"


@pytest.mark.parametrize("name,value,ok", [
    ("blur_sigma", float("inf"), False), ("blur_sigma", float("nan"), False), ("blur_sigma", 0, False),
    ("blur_sigma", np.float32(5), True), ("blur_sigma", 5, True), ("n_components", np.int64(3), True),
    ("n_components", 2.5, False), ("n_components", True, False), ("weight_threshold", 1.0, False),
    ("weight_threshold", 0.0, True), ("center", np.bool_(False), True), ("center", "yes", False),
    ("sign", "both", True), ("sign", "up", False),
])
def test_the_declaration_validates_the_constructor(tiny_rn, name, value, ok):
    if ok:
        assert dv.DecomCAM(tiny_rn, **{name: value}).get_params()[name] == value
    else:
        with pytest.raises(ValueError, match=name):
            dv.DecomCAM(tiny_rn, **{name: value})


def test_help_shows_every_knob_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for knob in all_knobs().values():
        assert knob.option in text
    assert "(default: 10)" in text and "(default: cosine)" in text
    assert "(default: 8 on a CPU, 32 on a GPU)" in text  # a knob chosen for the device says how


def test_batch_size_is_chosen_for_the_device_unless_given(tiny_rn):
    from decomviz.methods.base import default_batch_size
    assert default_batch_size("cpu") == 8 and default_batch_size("cuda") == 32
    for name in ("decomcam", "gradcam", "occlusion", "scorecam"):
        method = dv.make_method(name, tiny_rn)
        assert method.batch_size == default_batch_size(tiny_rn.device), name  # an int, recorded as used
        assert method.record()["batch_size"] == method.batch_size
    assert dv.DecomCAM(tiny_rn, batch_size=20).batch_size == 20
    knob = dv.DecomCAM.knobs()["batch_size"]
    assert knob.validate(None) is None and knob.validate(None, tiny_rn) == default_batch_size(tiny_rn.device)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        dv.DecomCAM(tiny_rn, batch_size=0)
    # an extraction's actors choose again on their own device (a Ray actor on a GPU: 32), unless it was given
    from decomviz.analysis.extractor import Extractor
    chosen, given = dv.DecomCAM(tiny_rn), dv.DecomCAM(tiny_rn, batch_size=20)
    assert chosen.given_params()["batch_size"] is None and chosen.get_params()["batch_size"] == 8
    assert given.given_params()["batch_size"] == 20
    assert Extractor(chosen, "a photo of a {}").knobs["batch_size"] is None
    assert Extractor(given, "a photo of a {}").knobs["batch_size"] == 20
    chosen.batch_size = 4  # set afterwards: given
    assert chosen.given_params()["batch_size"] == 4


def test_a_bank_is_the_same_bank_at_another_batch_size(tiny_rn, tmp_path):
    """The batch size changes the speed, not the maps: a bank made at one opens as made with another, and an
    extraction resumes at another."""
    world = dv.PartsWorld(3, seed=1, n_objects=1)
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=3, batch_size=32), world, "a photo of a {}",
                      out=tmp_path / "bank", batch_size=2, shard_size=2, progress=False)
    assert bank.protocol["batch_size"] == 32
    assert bank.made_with(dv.DecomCAM(tiny_rn, n_components=3))  # the device's default
    assert not bank.made_with(dv.DecomCAM(tiny_rn, n_components=4))
    again = dv.extract(dv.DecomCAM(tiny_rn, n_components=3, batch_size=5), world, "a photo of a {}",
                       out=tmp_path / "bank", batch_size=2, shard_size=2, progress=False)
    assert len(again) == len(bank)
    from decomviz.analysis.ray_engine import _comparable  # the Ray engine's resume compares the same way
    record = {"protocol": {**bank.protocol, "batch_size": 8}, "dataset": bank.dataset}
    assert _comparable(record) == _comparable({**record, "protocol": bank.protocol})
    assert _comparable(record) != _comparable({**record, "protocol": {**bank.protocol, "n_components": 4}})


def test_the_methods_page_of_the_docs_is_current():
    """docs/methods.md is generated from the registry: a method or knob added without regenerating it fails here."""
    from pathlib import Path

    from decomviz.apps.docs import methods_markdown
    page = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
    assert page.read_text() == methods_markdown(), "run: python -m decomviz.apps.docs"
    for name in METHODS:
        assert f"`{name}`" in page.read_text()


def test_knob_edge_values():
    knob = dv.DecomCAM.knobs()["blur_sigma"]
    with pytest.raises(ValueError, match="blur_sigma must be a finite number"):
        knob.validate(float("inf"))
    assert knob.validate(np.float32(5)) == 5.0 and knob.validate(np.int64(3)) == 3.0
