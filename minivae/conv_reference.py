"""What a convolution computes, as plain loops: conv2d_reference and conv_transpose2d_reference.

The definitions of what conv.py's fast layers (Conv2D, ConvTranspose2D) compute, written the slow, obvious way:
one output pixel at a time, far too slow to train with. tests/test_conv.py checks the layers against these two
on random shapes. They share with conv.py only the argument checks and size arithmetic (_pair, _same_pads,
_out_size), which conv.py imports from here.

Layout is NCHW: x is (B, C, H, W).
"""

import itertools
import numbers

from minivae import backend


def _pair(value, what, minimum):
    """(v, v) for an int v, or a pair of ints; each at least `minimum`."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and v >= minimum for v in pair):
        raise ValueError(f"{what} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _same_pads(in_size, kernel, stride):
    """Keras/TensorFlow 'same' padding of one axis: out = ceil(in / stride); the odd pixel goes after."""
    out_size = -(-in_size // stride)
    total = max((out_size - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


def _out_size(in_size, pads, kernel, stride):
    """floor((in + pad_before + pad_after - kernel) / stride) + 1 output pixels along one axis."""
    size = (in_size + pads[0] + pads[1] - kernel) // stride + 1
    if size < 1:
        raise ValueError(f"input size {in_size} with padding {pads} is smaller than the kernel ({kernel})")
    return size


def conv2d_reference(x, W, b, stride=1, padding=0):
    """out[n, o, u, v] = b[o] + sum_{c,i,j} W[o, c, i, j] * x[n, c, u*sh + i - top, v*sw + j - left],
    with x read as 0 outside the image (its padding). x: (B, C_in, H, W), W: (C_out, C_in, kh, kw), b: (C_out,);
    stride and padding as Conv2D takes them. Returns out (B, C_out, H_out, W_out), as Conv2D.forward."""
    xp = backend.xp
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = W.shape
    sh, sw = _pair(stride, "stride", 1)
    if padding == "same":
        (top, bottom), (left, right) = _same_pads(height, kh, sh), _same_pads(width, kw, sw)
    else:
        top, left = _pair(0 if padding == "valid" else padding, "padding", 0)
        bottom, right = top, left
    out_h, out_w = _out_size(height, (top, bottom), kh, sh), _out_size(width, (left, right), kw, sw)
    out = xp.zeros((batch, out_channels, out_h, out_w), dtype=x.dtype)
    for n, o, u, v in itertools.product(range(batch), range(out_channels), range(out_h), range(out_w)):
        total = b[o]
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
    sh, sw = _pair(stride, "stride", 1)
    if padding == "same":  # H_out = H * stride, padded like the Conv2D that maps H_out back to H
        out_h, out_w = height * sh, width * sw
        top, left = _same_pads(out_h, kh, sh)[0], _same_pads(out_w, kw, sw)[0]
    else:
        top, left = _pair(0 if padding == "valid" else padding, "padding", 0)
        extra_h, extra_w = _pair(output_padding, "output_padding", 0)
        out_h = (height - 1) * sh - 2 * top + kh + extra_h
        out_w = (width - 1) * sw - 2 * left + kw + extra_w
    out = xp.zeros((batch, out_channels, out_h, out_w), dtype=x.dtype) + b[None, :, None, None]
    for n, c, u, v, i, j in itertools.product(range(batch), range(channels), range(height), range(width),
                                              range(kh), range(kw)):
        row, col = u * sh + i - top, v * sw + j - left
        if 0 <= row < out_h and 0 <= col < out_w:
            out[n, :, row, col] += x[n, c, u, v] * W[c, :, i, j]
    return out
