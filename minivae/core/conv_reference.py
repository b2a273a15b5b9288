"""What a convolution computes, as plain loops: conv2d_reference and conv_transpose2d_reference.

The definitions of what conv.py's layers (and conv_fast.py's) compute, written the slow, obvious way: one output
pixel at a time, far too slow to train with. tests/core/test_conv.py checks every layer against these two on random
shapes. They share with the layers only the size arithmetic of padding.py.

Layout is NCHW: x is (B, C, H, W).
"""

import itertools

from minivae.core import backend
from minivae.core.padding import out_size, pair, same_pads


def conv2d_reference(x, W, b, stride=1, padding=0):
    """out[n, o, u, v] = b[o] + sum_{c,i,j} W[o, c, i, j] * x[n, c, u*sh + i - top, v*sw + j - left],
    with x read as 0 outside the image (its padding). x: (B, C_in, H, W), W: (C_out, C_in, kh, kw), b: (C_out,);
    stride and padding as Conv2D takes them. Returns out (B, C_out, H_out, W_out), as Conv2D.forward."""
    xp = backend.xp
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = W.shape
    sh, sw = pair(stride, "stride", 1)
    if padding == "same":
        (top, bottom), (left, right) = same_pads(height, kh, sh), same_pads(width, kw, sw)
    else:
        top, left = pair(0 if padding == "valid" else padding, "padding", 0)
        bottom, right = top, left
    out_h, out_w = out_size(height, (top, bottom), kh, sh), out_size(width, (left, right), kw, sw)
    out = xp.zeros((batch, out_channels, out_h, out_w), dtype=x.dtype)
    for n, o, u, v in itertools.product(range(batch), range(out_channels), range(out_h), range(out_w)):
        total = b[o].copy()  # a copy: on CuPy b[o] is a view, and += would write into the bias
        for c, i, j in itertools.product(range(channels), range(kh), range(kw)):
            row, col = u * sh + i - top, v * sw + j - left
            if 0 <= row < height and 0 <= col < width:
                total += W[o, c, i, j] * x[n, c, row, col]
        out[n, o, u, v] = total
    return out


def conv_transpose2d_reference(x, W, b, stride=1, padding=0, output_padding=0):
    """Every input pixel adds its value times the kernel onto the output, `stride` apart:
    out[n, :, u*sh + i - top, v*sw + j - left] += x[n, c, u, v] * W[c, :, i, j], dropping what lands outside.
    x: (B, C_in, H, W), W: (C_in, C_out, kh, kw), b: (C_out,); the rest as ConvTranspose2D takes them.
    Returns out (B, C_out, H_out, W_out), as ConvTranspose2D.forward."""
    xp = backend.xp
    batch, channels, height, width = x.shape
    _, out_channels, kh, kw = W.shape
    sh, sw = pair(stride, "stride", 1)
    if padding == "same":  # H_out = H * stride, padded like the Conv2D that maps H_out back to H
        out_h, out_w = height * sh, width * sw
        top, left = same_pads(out_h, kh, sh)[0], same_pads(out_w, kw, sw)[0]
    else:
        top, left = pair(0 if padding == "valid" else padding, "padding", 0)
        extra_h, extra_w = pair(output_padding, "output_padding", 0)
        out_h = (height - 1) * sh - 2 * top + kh + extra_h
        out_w = (width - 1) * sw - 2 * left + kw + extra_w
    out = xp.zeros((batch, out_channels, out_h, out_w), dtype=x.dtype) + b[None, :, None, None]
    for n, c, u, v, i, j in itertools.product(range(batch), range(channels), range(height), range(width),
                                              range(kh), range(kw)):
        row, col = u * sh + i - top, v * sw + j - left
        if 0 <= row < out_h and 0 <= col < out_w:
            out[n, :, row, col] += x[n, c, u, v] * W[c, :, i, j]
    return out
