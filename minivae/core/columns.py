"""Copying every kernel window of an image batch into a column, and the adjoint that adds columns back.

A convolution is a dot product of its kernel with every window of the (padded) image. im2col copies all the
windows of the whole batch into the columns of one matrix,

    cols[(c, i, j), (b, y, x)] = x_padded[b, c, y*sh + i, x*sw + j]        cols: (C*kh*kw, B*out_h*out_w)

so that conv.py's layers compute a whole convolution as ONE matrix product. col2im is its adjoint: it adds every
column entry back onto the pixel it was copied from (a pixel shared by overlapping windows receives the sum),
which is exactly the backward pass of "copy into windows". channels_first and batch_first switch between the
image layout (B, C, H, W) and the products' (C, B*H*W); pad and crop add and remove the zero border.
"""

import itertools

from minivae.core import backend


def pad(x, pads):
    """x (B, C, H, W) with zeros around: pads = ((top, bottom), (left, right)). x itself when all are 0."""
    if not any(pads[0] + pads[1]):
        return x
    return backend.xp.pad(x, ((0, 0), (0, 0), *pads))


def crop(x_padded, pads):
    """The inverse of pad (a view): cut pads = ((top, bottom), (left, right)) off a (B, C, H, W) array."""
    (top, bottom), (left, right) = pads
    height, width = x_padded.shape[2:]
    return x_padded[:, :, top : height - bottom, left : width - right]


def channels_first(x):
    """(B, C, H, W) -> (C, B*H*W), the layout of the matrix products. Free (a view) when x is channel-major in
    memory, as the layers' outputs are (batch_first); one copy otherwise."""
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)


def batch_first(x2, batch, height, width):
    """(C, B*H*W) -> (B, C, H, W): a transposed view, nothing copied (the inverse of channels_first). Its memory
    stays channel-major, so the next layer's channels_first is free."""
    return x2.reshape(len(x2), batch, height, width).transpose(1, 0, 2, 3)


def im2col(x_padded, kernel, stride, out_hw):
    """Every kernel window of x_padded (B, C, Hp, Wp) as a column: cols (C*kh*kw, B*out_h*out_w)."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    batch, channels = x_padded.shape[:2]
    s_b, s_c, s_y, s_x = x_padded.strides
    # A view, nothing copied yet: windows[c, i, j, b, y, x] = x_padded[b, c, y*sh + i, x*sw + j].
    windows = backend.xp.lib.stride_tricks.as_strided(
        x_padded, shape=(channels, kh, kw, batch, out_h, out_w), strides=(s_c, s_y, s_x, s_b, s_y * sh, s_x * sw)
    )
    return windows.reshape(channels * kh * kw, batch * out_h * out_w)  # the one copy


def col2im(cols, padded_shape, kernel, stride, out_hw):
    """The adjoint of im2col: every entry of cols (C*kh*kw, B*out_h*out_w) added back onto the pixel of a zero
    (B, C, Hp, Wp) array that im2col copied it from. Returns that array."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    batch, channels = padded_shape[:2]
    windows = cols.reshape(channels, kh, kw, batch, out_h, out_w)
    x_padded = backend.xp.zeros(padded_shape, dtype=cols.dtype)
    for i, j in itertools.product(range(kh), range(kw)):
        # tap (i, j) of window (y, x) was copied from pixel (y*sh + i, x*sw + j): rows i, i + sh, ..., one per y
        rows, columns = slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw)
        x_padded[:, :, rows, columns] += windows[:, i, j].transpose(1, 0, 2, 3)  # (B, C, out_h, out_w)
    return x_padded
