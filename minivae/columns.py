"""Copying every kernel window of an image batch into a column, and the adjoint that adds columns back.

A convolution is a dot product of its kernel with every window of the (padded) image. im2col copies all the
windows of the whole batch into the columns of one matrix,

    cols[(c, i, j), (b, y, x)] = x_padded[b, c, y*sh + i, x*sw + j]        cols: (C*kh*kw, B*out_h*out_w)

so that conv.py's layers compute a whole convolution as ONE matrix product. col2im is its adjoint: it adds every
column entry back onto the pixel it was copied from (a pixel shared by overlapping windows receives the sum),
which is exactly the backward pass of "copy into windows". channels_first / batch_first switch between the
image layout (B, C, H, W) and the products' (C, B*H*W), as views wherever memory allows; crop undoes padding.

Each channel's columns depend on that channel alone, so both functions hand blocks of channels to
threads.in_slices: with 2 threads, two copies (or two sets of adds) run at once.
"""

import itertools

from minivae import backend, threads


def crop(x_padded, pads):
    """The inverse of padding (a view): cut pads = ((top, bottom), (left, right)) off a (B, C, H, W) array."""
    (top, bottom), (left, right) = pads
    height, width = x_padded.shape[2:]
    return x_padded[:, :, top : height - bottom, left : width - right]


def channels_first(x):
    """(B, C, H, W) -> (C, B*H*W), the layout of the matrix products. Free (a view) when x is channel-major in
    memory, as every output of these layers is; one copy otherwise."""
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)


def batch_first(x2, batch, height, width):
    """(C, B*H*W) -> (B, C, H, W): a transposed view, nothing copied (the inverse of channels_first)."""
    return x2.reshape(len(x2), batch, height, width).transpose(1, 0, 2, 3)


def im2col(x_padded, kernel, stride, out_hw, out=None):
    """Every kernel window of x_padded (B, C, Hp, Wp) as a column: cols (C*kh*kw, B*out_h*out_w), written into
    `out` (an array of that shape) when given."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    batch, channels = x_padded.shape[:2]
    s_b, s_c, s_y, s_x = x_padded.strides
    # A view, nothing copied yet: windows[c, i, j, b, y, x] = x_padded[b, c, y*sh + i, x*sw + j].
    windows = backend.xp.lib.stride_tricks.as_strided(
        x_padded, shape=(channels, kh, kw, batch, out_h, out_w), strides=(s_c, s_y, s_x, s_b, s_y * sh, s_x * sw)
    )
    if out is None:
        out = backend.xp.empty((channels * kh * kw, batch * out_h * out_w), dtype=x_padded.dtype)
    threads.in_slices(backend.xp.copyto, out.reshape(windows.shape), windows)  # the one copy
    return out


def col2im_grid_pads(padded_shape, kernel, stride, out_hw):
    """Pads ((0, extra_h), (0, extra_w)) that put an (out_h, out_w) image on col2im's grid (Hg, Wg): zeros below
    and right, so that every shift col2im makes stays inside its image. The product that makes col2im's columns
    runs over that grid (see col2im)."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    height, width = padded_shape[2:]
    grid_h = max(out_h + (kh - 1) // sh, -(-height // sh))  # the largest shift i // sh, and all of x_padded
    grid_w = max(out_w + (kw - 1) // sw, -(-width // sw))
    return (0, grid_h - out_h), (0, grid_w - out_w)


def col2im(cols, padded_shape, kernel, stride, out_hw):
    """The adjoint of im2col: add every entry of cols back onto the pixel of a zero (B, C, Hp, Wp) array that
    im2col copied it from. cols is (C*kh*kw, B*Hg*Wg): its columns run over col2im_grid_pads' grid, the
    (out_h, out_w) positions plus zeros below and right. Returns a channel-major view (see channels_first)."""
    # Faster than one strided add per tap over rows of out_w floats (measured, batch 16, alternating: the
    # decoder's ConvTranspose2D forward 5.3 -> 3.8 ms, the stride-2 Conv2D's backward 6.5 -> 5.7 ms).
    # Tap (i, j) of window (y, x) lands on pixel (y*sh + i, x*sw + j), which is pixel (y + i // sh, x + j // sw)
    # of the phase (i % sh, j % sw): x_padded[a::sh, b::sw] for phase (a, b). On the flat grid, that is a shift
    # by (i // sh)*Wg + j // sw, so each tap is ONE add of long rows into its phase (the zeros of the grid absorb
    # what wraps around); then sh*sw strided copies interleave the phases.
    batch, channels, height, width = padded_shape
    (_, extra_h), (_, extra_w) = col2im_grid_pads(padded_shape, kernel, stride, out_hw)
    grid = out_hw[0] + extra_h, out_hw[1] + extra_w
    windows = cols.reshape(channels, kernel[0], kernel[1], batch * grid[0] * grid[1])
    x_padded = backend.xp.empty((channels, batch, height, width), dtype=cols.dtype)
    threads.in_slices(lambda w, x: _add_taps(w, x, stride, grid), windows, x_padded, axis=0)
    return x_padded.transpose(1, 0, 2, 3)


def _add_taps(windows, x_padded, stride, grid):
    """col2im for a block of channels: windows (C, kh, kw, B*Hg*Wg) added into x_padded (C, B, Hp, Wp)."""
    channels, kh, kw, size = windows.shape
    (sh, sw), (grid_h, grid_w) = stride, grid
    batch, height, width = x_padded.shape[1:]
    phases = backend.xp.empty((sh, sw, channels, size), dtype=windows.dtype)
    for a, b in itertools.product(range(sh), range(sw)):  # tap (a, b) is its phase's unshifted one: a copy
        phases[a, b] = windows[:, a, b] if a < kh and b < kw else 0
    for i, j in itertools.product(range(kh), range(kw)):
        shift = (i // sh) * grid_w + j // sw
        if shift:
            phases[i % sh, j % sw, :, shift:] += windows[:, i, j, : size - shift]
    for a, b in itertools.product(range(sh), range(sw)):
        phase = phases[a, b].reshape(channels, batch, grid_h, grid_w)
        x_padded[:, :, a::sh, b::sw] = phase[:, :, : len(range(a, height, sh)), : len(range(b, width, sw))]
