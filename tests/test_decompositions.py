"""DecomCAM's splits: the paper's SVD, the batched NMF, a user's function; and the public tap they start from."""
import numpy as np
import pytest
import torch

import decomviz as dv
from decomviz.methods.decomcam import decompose, decompose_nmf, decompose_with
from decomviz.methods.nmf import nmf

from .conftest import make_image


def _nonneg(seed, shape=(3, 20, 40)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) ** 3


def test_nmf_fits_as_well_as_scikit_learns_solver_with_the_same_start():
    from sklearn.decomposition import NMF
    X = _nonneg(0)
    W, H, _ = nmf(X, 5, max_iter=200, tol=1e-4)
    ours = ((X - W @ H).norm(dim=(1, 2)) / X.norm(dim=(1, 2))).numpy()
    for i in range(len(X)):
        ref = NMF(5, init="nndsvda", solver="mu", max_iter=200, tol=1e-4).fit(X[i].double().numpy())
        w = ref.transform(X[i].double().numpy())
        theirs = np.linalg.norm(X[i].numpy() - w @ ref.components_) / np.linalg.norm(X[i].numpy())
        # both are local optima from the same deterministic start: the relative errors agree to 2 %
        assert ours[i] == pytest.approx(theirs, rel=0.02)


def test_nmf_factors_are_non_negative_and_ordered_by_energy():
    W, H, n_iter = nmf(_nonneg(1), 4)
    assert (W >= 0).all() and (H >= 0).all() and 1 <= n_iter <= 200
    energy = W.norm(dim=1) * H.norm(dim=2)
    assert (energy[:, :-1] >= energy[:, 1:] - 1e-6).all()


def test_nmf_of_a_batch_matches_each_matrix_alone():
    X = _nonneg(2)
    W, H, _ = nmf(X, 3, max_iter=60, tol=0)
    for i in range(len(X)):
        w, h, _ = nmf(X[i:i + 1], 3, max_iter=60, tol=0)
        # batched and single matmuls may round differently: compare the reconstructions to a float32 tolerance
        torch.testing.assert_close(W[i] @ H[i], (w @ h)[0], rtol=1e-3, atol=1e-4)


def test_nmf_is_deterministic():
    X = _nonneg(3)
    a, b = nmf(X, 4), nmf(X, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the same computation on the same path


def test_nmf_refuses_negative_entries_and_wrong_shapes():
    with pytest.raises(ValueError, match="non-negative"):
        nmf(-_nonneg(4), 2)
    with pytest.raises(ValueError, match=r"\(N, n, P\)"):
        nmf(torch.rand(5, 5), 2)


def _activations(seed=0, B=2, T=2, C=12, h=4, w=5):
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(B, C, h, w, generator=g)
    G = torch.randn(B, T, C, h, w, generator=g)
    return A, G


def test_nmf_split_gives_non_negative_unit_maps_of_the_positive_evidence():
    A, G = _activations()
    dec = decompose_nmf(A, G, top_channels=8, n_components=3)
    assert dec.u.shape == (2, 2, 3, 20) and dec.v.shape == (2, 2, 3, 8)
    assert (dec.u >= 0).all() and (dec.v >= 0).all()
    torch.testing.assert_close(dec.u.norm(dim=-1), torch.ones(2, 2, 3), rtol=0, atol=1e-5)
    assert (dec.singular_values[..., :-1] >= dec.singular_values[..., 1:] - 1e-7).all()
    # channels with a negative weight carry no positive evidence: their loadings are zero
    alpha_kept = dec.alpha.gather(-1, dec.channels)
    assert (dec.v[(alpha_kept <= 0)[..., None, :].expand_as(dec.v)] <= 1e-6).all()
    assert (dec.explained_variance <= 1 + 1e-5).all()


def test_a_decomposition_function_sees_the_weighted_maps_and_its_maps_are_used_as_given():
    A, G = _activations(1)
    seen = {}

    def gradcam_split(X):
        seen["shape"] = tuple(X.shape)
        return X.sum(-1, keepdim=True).transpose(1, 2)  # one component: the Grad-CAM map

    dec = decompose_with(gradcam_split, A, G, top_channels=12, n_components=5)
    assert seen["shape"] == (4, 20, 12)
    spatial = dec.spatial()[:, :, 0]
    torch.testing.assert_close(spatial, dec.gradcam, rtol=1e-5, atol=1e-6)


def test_a_decomposition_function_with_the_wrong_shape_is_refused_by_name():
    A, G = _activations(2)
    with pytest.raises(ValueError, match=r"\(pairs, K, cells\)"):
        decompose_with(lambda X: X, A, G, 12, 3)


def test_svd_split_is_unchanged_by_the_new_options(tiny_rn):
    A, G = _activations(3)
    a = decompose(A, G, 8, 3, center=True)
    b = dv.DecomCAM(tiny_rn, top_channels=8, n_components=3)  # the defaults: decomposition="svd", center=True
    torch.testing.assert_close(b.decompose(A, G).u, a.u)  # the same function on the same path


def test_decomcam_with_nmf_explains_and_records_its_split(tiny_rn):
    img = make_image(0)
    exp = dv.DecomCAM(tiny_rn, decomposition="nmf", n_components=4, top_channels=64)(img, ["a dog", "a cat"])
    assert exp.params["decomposition"] == "nmf"
    assert exp.ossms.shape[2] == 4 and (exp.ossms >= 0).all() and (exp.ossms_lowres >= 0).all()
    assert ((exp.weights >= 0) & (exp.weights <= 1)).all()
    assert exp.saliency.shape[:2] == (1, 2)


def test_decomcam_with_a_function_records_its_name(tiny_rn):
    def one_map(X):
        return X.clamp_min(0).sum(-1, keepdim=True).transpose(1, 2)

    exp = dv.DecomCAM(tiny_rn, decomposition=one_map, n_components=3)(make_image(1), "a dog")
    assert exp.params["decomposition"].endswith("one_map")
    assert exp.weights.shape[-1] == 1


def test_nmf_refuses_the_svd_sign_rules_with_a_fix(tiny_rn):
    with pytest.raises(ValueError, match="sign='gradcam'"):
        dv.make_method("decomcam-authors", tiny_rn, decomposition="nmf")
    with pytest.raises(ValueError, match="sign='gradcam'"):
        dv.DecomCAM(tiny_rn, decomposition="nmf", sign="both")


def test_decomposition_knob_refuses_unknown_names_and_offers_the_choices(tiny_rn):
    with pytest.raises(ValueError, match="'svd', 'nmf' or a function"):
        dv.DecomCAM(tiny_rn, decomposition="pca")
    assert dv.METHODS["decomcam-nmf"].fixed == {"decomposition": "nmf"}
    assert "decomposition" in dv.METHODS["decomcam"].knobs


def test_tap_gradients_gives_what_decomcam_decomposes(tiny_rn):
    img = make_image(2)
    g = dv.tap_gradients(tiny_rn, img, ["a dog", "a cat"])
    assert g.activations.ndim == 4 and g.gradients.shape[:2] == (1, 2)
    assert g.gradients.shape[2:] == g.activations.shape[1:] and g.pixels.shape[0] == 1
    cam = dv.DecomCAM(tiny_rn, n_components=3, top_channels=32)
    exp = cam(img, ["a dog", "a cat"])
    dec = cam.decompose(g.activations, g.gradients)
    # two passes of the same forward and backward on the same path
    torch.testing.assert_close(dec.u, exp.u, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g.scores, exp.base_score, rtol=1e-5, atol=1e-6)
