"""The SVD through the Gram matrix (svd_driver="gram", the default route for wide matrices) against the direct SVD."""
import pytest
import torch

import decomviz as dv
from decomviz.methods.decomcam import decompose, gram_svd


def test_gram_route_matches_the_direct_svd_on_wide_matrices():
    X = torch.randn(32, 196, 500, generator=torch.Generator().manual_seed(0))
    U, S, Vh, _ = gram_svd(X, 10)
    U0, S0, Vh0 = torch.linalg.svd(X, full_matrices=False)
    assert torch.allclose(S[:, :10], S0[:, :10], rtol=1e-4)
    # the same singular vectors up to sign (distinct singular values here)
    align_u = (U[..., :10] * U0[..., :10]).sum(-2).abs()
    align_v = (Vh * Vh0[:, :10]).sum(-1).abs()
    assert align_u.min() > 0.999 and align_v.min() > 0.999
    assert torch.allclose((S ** 2).sum(-1), (X ** 2).sum((-2, -1)), rtol=1e-4)   # total variance kept


def test_gram_route_zeroes_the_components_beyond_the_rank():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(4, 50, 6, generator=g) @ torch.randn(4, 6, 120, generator=g)   # rank 6
    U, S, Vh, rtol = gram_svd(X, 10)
    null = S[:, :10] <= rtol * S[:, :1]
    assert null[:, 6:].all() and not null[:, :6].any()
    assert (Vh[:, 6:] == 0).all()
    assert torch.allclose(S[:, :6], torch.linalg.svdvals(X)[:, :6], rtol=1e-4)


@pytest.mark.parametrize("center", [True, False])
def test_decompose_gives_the_same_components_by_either_route(center):
    g = torch.Generator().manual_seed(2)
    acts = torch.randn(2, 300, 7, 7, generator=g).relu()
    grads = torch.randn(2, 3, 300, 7, 7, generator=g)
    direct = decompose(acts, grads, 200, 5, center, svd_driver=None)
    gram = decompose(acts, grads, 200, 5, center, svd_driver="gram")
    auto = decompose(acts, grads, 200, 5, center)                         # 200 channels >= 2 x 49 cells
    assert torch.allclose(direct.singular_values, gram.singular_values, rtol=1e-4)
    # both orient by the Grad-CAM map, so the maps agree with their signs
    assert torch.allclose(direct.spatial(), gram.spatial(), atol=1e-3 * float(direct.singular_values.max()))
    assert torch.equal(auto.singular_values, gram.singular_values)


def test_the_route_is_a_knob_recorded_in_the_protocol(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=3, svd_driver="gram")(images, ["a red circle"])
    ref = dv.DecomCAM(tiny_rn, n_components=3, svd_driver=None)(images, ["a red circle"])
    assert exp.params["svd_driver"] == "gram"
    assert torch.allclose(exp.singular_values, ref.singular_values, rtol=1e-3, atol=1e-6)


def test_to_host_packs_every_dtype_and_shape_back_unchanged():
    from decomviz.ops import to_host
    arrays = {"f": torch.randn(3, 5), "i": torch.arange(7), "b": torch.tensor([True, False, True]),
              "h": torch.randn(2, 3).half(), "s": torch.tensor(2.5, dtype=torch.float64),
              "t": torch.randn(4, 6)[:, ::2]}                               # not contiguous
    a, flags = to_host(arrays, {"x": torch.tensor([True, False])}, pack=True)   # the GPU path, on the CPU
    for k, t in arrays.items():
        assert a[k].dtype == t.dtype and a[k].shape == t.shape and torch.equal(a[k], t)
    assert flags["x"].tolist() == [True, False]
