"""Non-negative least squares for contact forces, one small problem per frame.

Each frame asks: which non-negative combination of friction-cone edge forces (and joint-limit
forces) best produces the generalized force the motion needs? Only columns that can carry force in
that frame (contacts near the floor, joints at a limit) enter its problem, so each is tiny
(~14 rows x ~20 columns) and scipy's compiled active-set solver takes ~10 us per frame; an
accelerated projected-gradient solver batched over frames in numpy was 10x slower and inexact.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


def batched_nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_{x >= 0} ||A x - b|| for every batch element: A [B, m, n], b [B, m] -> x [B, n].

    All-zero columns (inactive contacts) are left out of each element's solve and get x = 0.
    """
    B, m, n = A.shape
    x = np.zeros((B, n))
    if n == 0:
        return x
    live = np.abs(A).sum(axis=1) > 0
    for i in range(B):
        cols = np.flatnonzero(live[i])
        if len(cols):
            x[i, cols] = nnls(A[i][:, cols], b[i], maxiter=50 * len(cols))[0]
    return x


def friction_pyramid(mu: float) -> np.ndarray:
    """[4, 3] edge directions of a linearised friction cone with a +z normal."""
    return np.array([[mu, 0, 1], [-mu, 0, 1], [0, mu, 1], [0, -mu, 1]], float)
