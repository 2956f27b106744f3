"""Images as users give them: EXIF orientation honoured by every reader, pixel scales read from the dtype,
ambiguous float tensors refused, NaN and wrong-sized tensors named, decompression bombs stopped."""

import numpy as np
import pytest
import torch
from PIL import Image

import decomviz as dv
from decomviz.apps.cli import main
from decomviz.images import to_rgb
from decomviz.models import Normalized
from tests.conftest import make_image
from tests.test_bank_integrity import bomb_png

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def _cam(model, **kw):
    return dv.DecomCAM(model, n_components=2, top_channels=16, **kw)


@pytest.fixture
def upright():
    return make_image(3, 90, 150)  # landscape, asymmetric


def _sideways_photo(path, upright, orientation=6):
    """What a phone writes: the pixels as the sensor saw them, and an EXIF tag saying how to turn them."""
    turned = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
    im = Image.fromarray(upright).transpose(turned[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_honoured_in_every_reader(tiny_rn, tmp_path, upright, orientation):
    from decomviz.analysis.datasets import ImageFolderItems
    from decomviz.widgets._common import decode_upload
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    path = _sideways_photo(tmp_path / "photos" / "cat" / "phone.png", upright, orientation)
    assert np.asarray(Image.open(path)).shape[:2] != upright.shape[:2] or orientation == 3
    assert np.array_equal(np.asarray(to_rgb(path)), upright)  # explain, Explorer paths
    assert np.array_equal(np.asarray(to_rgb(Image.open(path))), upright)  # a PIL image opened by the user
    assert np.array_equal(np.asarray(decode_upload({"name": "p.png", "content": path.read_bytes()})[1]), upright)
    assert np.array_equal(np.asarray(ImageFolderItems(tmp_path / "photos")[0].image), upright)  # extraction
    cam = _cam(tiny_rn)
    assert torch.equal(cam(str(path), "a photo").saliency, cam(upright, "a photo").saliency)


def test_explain_cli_reads_exif_orientation(tiny_dirs, tmp_path, upright):
    path = _sideways_photo(tmp_path / "phone.png", upright)
    assert main(["explain", str(path), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--method",
                 "gradcam", "--out", str(tmp_path / "e.npz")]) == 0
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    assert torch.equal(dv.Explanation.load(tmp_path / "e.npz").images, dv.GradCAM(model)(upright, "x").images)


def test_float_tensors_in_0_1_are_refused_as_ambiguous(tiny_rn):
    cam = dv.GradCAM(tiny_rn)
    pixels = torch.from_numpy(make_image(0, 128, 128)).permute(2, 0, 1)[None].float() / 255
    with pytest.raises(dv.ImageInputError, match=r"ambiguous.*model\.normalize\(tensor\).*Normalized\(tensor\)"):
        cam(pixels, "x")
    expected = cam(make_image(0, 128, 128), "x")
    assert torch.allclose(cam(tiny_rn.normalize(pixels), "x").saliency, expected.saliency, atol=1e-5)
    normalised = tiny_rn.prepare(make_image(0, 128, 128)).tensor
    assert torch.allclose(cam(normalised, "x").saliency, expected.saliency, atol=1e-5)  # plainly normalised
    bright = torch.full((1, 3, 128, 128), 0.5)  # a normalised batch that happens to lie in [0, 1]
    assert cam(Normalized(bright), "x").saliency.shape == (1, 1, 128, 128)
    with pytest.raises(dv.ImageInputError, match="0-255"):
        cam(pixels * 255, "x")
    with pytest.raises(dv.ImageInputError, match="pixel values in"):
        tiny_rn.normalize(pixels * 255)


def test_pixel_scales_follow_the_dtype_never_the_values(tmp_path):
    dark16 = np.full((8, 8, 3), 200, np.uint16)  # a dark 16-bit image, not an 8-bit one
    assert np.asarray(to_rgb(dark16)).max() == 1
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark16.png")
    assert np.asarray(to_rgb(tmp_path / "dark16.png")).max() == 1
    assert np.asarray(to_rgb(np.full((8, 8, 3), 200, np.int64))).max() == 200  # ints 0-255 are 8-bit
    with pytest.raises(dv.ImageInputError, match=r"astype\(np\.uint16\)"):
        to_rgb(np.full((8, 8, 3), 40000, np.int64))
    assert np.asarray(to_rgb(np.full((8, 8, 3), 0.8))).max() == 204  # floats are [0, 1]
    with pytest.raises(dv.ImageInputError, match=r"\[0, 1\].*astype\(np\.uint8\)"):
        to_rgb(np.full((8, 8, 3), 200.0))
    with pytest.raises(dv.ImageInputError, match=r"\[0, 1\]"):
        to_rgb(np.full((8, 8, 3), -0.5))


def test_nan_and_wrong_sized_tensors(tiny_rn):
    cam = _cam(tiny_rn)
    x = tiny_rn.prepare(make_image(0)).tensor
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(dv.ImageInputError, match="1 NaN or infinite"):
        cam(bad, "x")
    with pytest.raises(dv.ImageInputError, match=r"64x64, but .* takes 128x128"):
        cam(x[..., :64, :64], "x")


def test_bomb_image_in_explain_is_a_clean_error(tmp_path, capsys):
    bomb = bomb_png(tmp_path / "bomb.png")
    assert main(["explain", str(bomb), "--prompt", "x", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "decompression bomb" in err and "Traceback" not in err


def test_bomb_image_in_the_explorer_gives_a_message(tiny_rn, tmp_path):
    from decomviz.widgets import Explorer
    bomb = bomb_png(tmp_path / "bomb.png")
    ex = Explorer(tiny_rn, n_scenes=1)
    assert ex.set_image(str(bomb)) is False and "decompression bomb" in ex.status.value
    assert ex.set_upload(({"name": "bomb.png", "content": bomb.read_bytes()},)) is False
    assert "decompression bomb" in ex.status.value
    assert ex.set_image(make_image(0)) is True  # still usable
