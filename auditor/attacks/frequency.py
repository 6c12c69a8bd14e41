"""Orthonormal 2-D DCT on image batches, and the colour transform the frequency attacks work in."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# ITU-R BT.601 RGB -> YUV (FTrojan's choice); rows give Y, U, V
_RGB_TO_YUV = np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]],
                       dtype=np.float64)
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV)


def rgb_to_yuv(x: np.ndarray) -> np.ndarray:
    return x @ _RGB_TO_YUV.T


def yuv_to_rgb(x: np.ndarray) -> np.ndarray:
    return x @ _YUV_TO_RGB.T


@lru_cache(maxsize=8)
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: row k is the k-th cosine basis vector of length ``n``."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


def dct2(x: np.ndarray) -> np.ndarray:
    """DCT-II over the two spatial axes of an NHWC batch (orthonormal, so energy is kept).

    A matrix product per axis: images here are at most a few hundred pixels a side, and numpy is
    the only dependency it needs."""
    rows, cols = _dct_matrix(x.shape[1]), _dct_matrix(x.shape[2])
    return np.einsum("kh,lw,nhwc->nklc", rows, cols, x, optimize=True).astype(_float_type(x))


def idct2(x: np.ndarray) -> np.ndarray:
    """The inverse of ``dct2`` (the matrices are orthogonal, so their transposes)."""
    rows, cols = _dct_matrix(x.shape[1]), _dct_matrix(x.shape[2])
    return np.einsum("kh,lw,nklc->nhwc", rows, cols, x, optimize=True).astype(_float_type(x))


def _float_type(x: np.ndarray) -> np.dtype:
    """float32 in, float32 out; anything else comes back as float64."""
    return x.dtype if x.dtype == np.float32 else np.dtype(np.float64)
