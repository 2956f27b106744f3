"""Non-negative matrix factorization of many small matrices at once, in torch, on their own device.

DecomCAM's non-negative split (``DecomCAM(decomposition="nmf")``, docs/method.md) factorizes one (cells x channels)
matrix per (image, prompt) pair. scikit-learn factorizes one matrix per call on the CPU; here every pair is a slice
of one batch, initialised deterministically (NNDSVDa) and refined by the multiplicative updates of Lee and Seung
for the Frobenius loss, so the same call runs on CUDA.
"""
from __future__ import annotations

from typing import Tuple

import torch

_EPS = 1e-10
CHECK_EVERY = 10  # iterations between convergence checks (each is a host sync)


def nndsvda(X: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation (Boutsidis and Gallopoulos, 2008) of a batch X (N, n, P) >= 0, with zeros filled by
    each matrix's mean ("a" variant: multiplicative updates never move an entry away from 0).

    Returns W (N, n, k) and H (N, k, P), both >= 0.
    """
    N, n, P = X.shape
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    r = S.shape[-1]
    U, S, V = U[..., :min(k, r)], S[..., :min(k, r)], Vh[:, :min(k, r)]
    W = X.new_zeros(N, n, k)
    H = X.new_zeros(N, k, P)
    # the leading pair of a non-negative matrix has one sign (Perron-Frobenius): take magnitudes
    W[..., 0] = S[:, :1].sqrt() * U[..., 0].abs()
    H[:, 0] = S[:, :1].sqrt() * V[:, 0].abs()
    if U.shape[-1] > 1:
        x, y = U[..., 1:], V[:, 1:].transpose(1, 2)  # (N, n, j), (N, P, j)
        xp, xn, yp, yn = x.clamp_min(0), (-x).clamp_min(0), y.clamp_min(0), (-y).clamp_min(0)
        xpn, xnn = xp.norm(dim=1), xn.norm(dim=1)  # (N, j)
        ypn, ynn = yp.norm(dim=1), yn.norm(dim=1)
        mp, mn = xpn * ypn, xnn * ynn
        use_p = (mp > mn)[:, None]
        u = torch.where(use_p, xp / xpn.clamp_min(_EPS)[:, None], xn / xnn.clamp_min(_EPS)[:, None])
        v = torch.where(use_p, yp / ypn.clamp_min(_EPS)[:, None], yn / ynn.clamp_min(_EPS)[:, None])
        lam = (S[:, 1:] * torch.where(use_p[:, 0], mp, mn)).sqrt()[:, None]  # (N, 1, j)
        j = u.shape[-1]
        W[..., 1:1 + j] = lam * u
        H[:, 1:1 + j] = (lam * v).transpose(1, 2)
    avg = X.mean(dim=(1, 2), keepdim=True)
    W = torch.where(W == 0, avg.expand_as(W), W)
    H = torch.where(H == 0, avg.expand_as(H), H)
    return W, H


def nmf(X: torch.Tensor, k: int, max_iter: int = 200, tol: float = 1e-4) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Factorize every matrix of X (N, n, P) >= 0 as W H, W (N, n, k) >= 0, H (N, k, P) >= 0, minimising the
    Frobenius error.

    Stops after ``max_iter`` multiplicative updates, or earlier once, for every matrix, the error fell by less
    than ``tol`` of its initial value over the last ``CHECK_EVERY`` iterations (scikit-learn's rule). Components
    are returned by decreasing energy ||W_k|| ||H_k|| (the norm of W_k H_k), so the first is the largest.
    Returns W, H and the number of iterations run.
    """
    if X.ndim != 3:
        raise ValueError(f"nmf takes a batch of matrices (N, n, P); got shape {tuple(X.shape)}.")
    if bool((X < 0).any()):
        raise ValueError("nmf needs non-negative matrices; clip them at zero first.")
    X = X.float()
    W, H = nndsvda(X, k)
    norm0 = None
    previous = None
    done = 0
    for it in range(max_iter):
        H = H * (W.transpose(1, 2) @ X) / ((W.transpose(1, 2) @ W) @ H + _EPS)
        W = W * (X @ H.transpose(1, 2)) / (W @ (H @ H.transpose(1, 2)) + _EPS)
        done = it + 1
        if tol > 0 and done % CHECK_EVERY == 0:
            err = (X - W @ H).pow(2).sum(dim=(1, 2))
            if norm0 is None:
                norm0 = X.pow(2).sum(dim=(1, 2)).clamp_min(_EPS)
            if previous is not None and bool((((previous - err) / norm0) < tol).all()):
                break
            previous = err
    energy = W.norm(dim=1) * H.norm(dim=2)  # (N, k)
    order = energy.argsort(dim=-1, descending=True)
    W = W.gather(2, order[:, None, :].expand_as(W))
    H = H.gather(1, order[..., None].expand_as(H))
    return W, H, done
