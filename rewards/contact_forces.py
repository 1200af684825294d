"""Batched non-negative least squares for contact forces.

One small NNLS per frame (a few dozen friction-cone edge forces against the root wrench) is too slow
as a Python loop (~2k frames/s), so all frames are solved at once with accelerated projected gradient
(FISTA) on the normal equations: every iteration is one batched matmul.
"""
from __future__ import annotations

import numpy as np


def batched_nnls(A: np.ndarray, b: np.ndarray, iters: int = 300, tol: float = 1e-9) -> np.ndarray:
    """argmin_{x >= 0} ||A x - b|| for every batch element.

    A: [B, m, n], b: [B, m] -> x: [B, n]. Columns of zeros are allowed (inactive contacts).
    """
    B, m, n = A.shape
    if n == 0 or B == 0:
        return np.zeros((B, n))
    AtA = A.transpose(0, 2, 1) @ A
    Atb = np.einsum("bmn,bm->bn", A, b)
    L = 1.1 * largest_eigenvalue(AtA) + 1e-12
    x = np.zeros((B, n))
    y = x.copy()
    t = 1.0
    for _ in range(iters):
        grad = np.einsum("bij,bj->bi", AtA, y) - Atb
        x_new = np.maximum(y - grad / L, 0.0)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        step = np.abs(x_new - x).max()
        x, t = x_new, t_new
        if step < tol:
            break
    return x


def friction_pyramid(mu: float) -> np.ndarray:
    """[4, 3] edge directions of a linearised friction cone with a +z normal (unit-normal components)."""
    return np.array([[mu, 0, 1], [-mu, 0, 1], [0, mu, 1], [0, -mu, 1]], float)


def largest_eigenvalue(S: np.ndarray, iters: int = 20) -> np.ndarray:
    """[B, 1] largest eigenvalue of symmetric PSD matrices [B, n, n] by power iteration."""
    v = np.ones(S.shape[:2]) / np.sqrt(S.shape[1])
    lam = np.zeros((S.shape[0], 1))
    for _ in range(iters):
        w = np.einsum("bij,bj->bi", S, v)
        lam = np.linalg.norm(w, axis=1, keepdims=True)
        v = w / np.maximum(lam, 1e-300)
    return lam
