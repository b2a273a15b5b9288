"""conv.py's Conv2D and ConvTranspose2D with fewer copies: the same contract and the same numbers to rounding
(tests/core/test_conv_fast.py holds them to conv.py's layers). The convnet (models/convnet.py) is built from these;
read conv.py first, since everything here is a way round one of its steps.

What each trick saves is measured in docs/speed.md. At batch 128 the columns are big (C*9 times the image: 115 MB
for 32 channels at 28x28), so:
* Work arrays (the columns, the padded input) are kept in the layer and reused from step to step: a fresh
  100 MB array costs page faults every time it is first written. The padded copy keeps its zero border, so only
  its inside is written (`_padded`).
* col2im by phases (`col2im_by_phases`): instead of kh*kw strided adds of short rows, one add per tap of long
  rows into its stride phase, then sh*sw strided copies interleave the phases. The product that makes the
  columns runs over a slightly bigger grid (`col2im_grid_pads`) so that every shift stays inside.
* Conv2D's dx as a convolution (`_dx_by_convolution`), where it can be had so (stride 1, no more output than input
  channels): an im2col and a product, no col2im.
* Conv2D by shifts (`_forward_by_shifts`, `_dW_by_shifts`), where a stride-1 layer has fewer output than input
  channels (the decoder's last layer, 32 -> 1): no columns at all, one product gives every tap at every position
  and kh*kw shifted adds sum them.
* Weight gradients computed as their transposes (`_transposed_product`): OpenBLAS runs that orientation of these
  shapes faster.
* With 2 or more threads, the copies (im2col, padding) and col2im's adds are cut into one block of channels per
  thread (threads.in_slices); BLAS threads the products itself.
"""

import itertools

from minivae.core import backend, threads
from minivae.core.columns import batch_first, channels_first, crop
from minivae.core.conv import Conv2D, ConvTranspose2D
from minivae.core.padding import conv_geometry

# ---- columns into kept arrays, and col2im by phases -------------------------------------------------------------


def im2col_into(x_padded, kernel, stride, out_hw, out):
    """columns.im2col written into `out` (C*kh*kw, B*out_h*out_w), one block of channels per thread."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    batch, channels = x_padded.shape[:2]
    s_b, s_c, s_y, s_x = x_padded.strides
    windows = backend.xp.lib.stride_tricks.as_strided(  # windows[c, i, j, b, y, x] = x_padded[b, c, y*sh+i, x*sw+j]
        x_padded, shape=(channels, kh, kw, batch, out_h, out_w), strides=(s_c, s_y, s_x, s_b, s_y * sh, s_x * sw)
    )
    threads.in_slices(backend.xp.copyto, out.reshape(windows.shape), windows)  # the one copy
    return out


def col2im_grid_pads(padded_shape, kernel, stride, out_hw):
    """Pads ((0, extra_h), (0, extra_w)) that put an (out_h, out_w) image on col2im_by_phases' grid (Hg, Wg): zeros
    below and right, so that every shift it makes stays inside its image. The product that makes its columns runs
    over that grid."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    height, width = padded_shape[2:]
    grid_h = max(out_h + (kh - 1) // sh, -(-height // sh))  # the largest shift i // sh, and all of x_padded
    grid_w = max(out_w + (kw - 1) // sw, -(-width // sw))
    return (0, grid_h - out_h), (0, grid_w - out_w)


def col2im_by_phases(cols, padded_shape, kernel, stride, out_hw):
    """columns.col2im for cols (C*kh*kw, B*Hg*Wg) whose columns run over col2im_grid_pads' grid (the (out_h, out_w)
    positions plus zeros below and right). Returns (B, C, Hp, Wp) as a channel-major view.

    Tap (i, j) of window (y, x) lands on pixel (y*sh + i, x*sw + j), which is pixel (y + i // sh, x + j // sw) of
    the phase (i % sh, j % sw): x_padded[a::sh, b::sw] for phase (a, b). On the flat grid that is a shift by
    (i // sh)*Wg + j // sw, so each tap is ONE add of long rows into its phase (the zeros of the grid absorb what
    wraps around); then sh*sw strided copies interleave the phases."""
    batch, channels, height, width = padded_shape
    (_, extra_h), (_, extra_w) = col2im_grid_pads(padded_shape, kernel, stride, out_hw)
    grid = out_hw[0] + extra_h, out_hw[1] + extra_w
    windows = cols.reshape(channels, kernel[0], kernel[1], batch * grid[0] * grid[1])
    x_padded = backend.xp.empty((channels, batch, height, width), dtype=cols.dtype)
    threads.in_slices(lambda w, x: _add_taps(w, x, stride, grid), windows, x_padded, axis=0)
    return x_padded.transpose(1, 0, 2, 3)


def _add_taps(windows, x_padded, stride, grid):
    """col2im_by_phases for a block of channels: windows (C, kh, kw, B*Hg*Wg) added into x_padded (C, B, Hp, Wp)."""
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


# ---- the layers ----------------------------------------------------------------------------------------------------


class WorkArrays:
    """What both fast layers add to conv.py's: arrays kept from call to call, and the transposed weight product."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.work = {}  # name -> array

    def _work(self, name, shape, dtype):
        """An uninitialised array kept in the layer and reused while shape and dtype stay the same."""
        array = self.work.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self.work[name] = backend.xp.empty(shape, dtype=dtype)
        return array

    def _padded(self, name, x, pads):
        """x (B, C, H, W) with zeros around, pads = ((top, bottom), (left, right)); x itself when all are 0.
        It is a work array: only its inside is written each time, the zero border stays from when the array was
        made (a new one, zeroed, whenever the shape, dtype or pads change)."""
        (top, bottom), (left, right) = pads
        if not any(pads[0] + pads[1]):
            return x
        batch, channels, height, width = x.shape
        shape = (batch, channels, height + top + bottom, width + left + right)
        array = self.work.get(name)
        if array is None or array.shape != shape or array.dtype != x.dtype or self.work.get(name + " pads") != pads:
            # channel-major in memory, like the layers' outputs (columns.channels_first), so the copy below is straight
            array = backend.xp.zeros((channels, batch, *shape[2:]), dtype=x.dtype).transpose(1, 0, 2, 3)
            self.work[name], self.work[name + " pads"] = array, pads
        threads.in_slices(backend.xp.copyto, crop(array, pads), x)  # only the inside: the border stays 0
        return array

    def _transposed_product(self, a, b, out):
        """out = (a @ b).T, for a weight gradient: dW2 = dout2 @ cols.T is written as (cols @ dout2.T).T.
        The same numbers; BLAS (OpenBLAS) runs this orientation of these shapes faster (docs/speed.md)."""
        product = backend.xp.matmul(a, b, out=self._work("dW transposed", (a.shape[0], b.shape[1]), a.dtype))
        out[...] = product.T
        return out


class FastConv2D(WorkArrays, Conv2D):
    """Conv2D (conv.py), the same numbers with fewer copies: by shifts where C_out < C_in at stride 1, dx as a
    convolution where it can be, col2im by phases elsewhere; work arrays kept between calls."""

    def forward(self, x):
        batch, _, height, width = x.shape
        (out_h, out_w), self.pads = conv_geometry(self.padding, (height, width), self.kernel_size, self.stride)
        kh, kw = self.kernel_size
        x_padded = self._padded("x padded", x, self.pads)
        self.padded_shape = x_padded.shape
        if self.by_shifts():
            self.cols = None
            return self._forward_by_shifts(x_padded, out_h, out_w)
        cols_shape = (self.in_channels * kh * kw, batch * out_h * out_w)  # (K, N), N = B*out_h*out_w
        self.cols = im2col_into(x_padded, self.kernel_size, self.stride, (out_h, out_w),
                                out=self._work("cols", cols_shape, x.dtype))
        out = self.params["W"].reshape(self.out_channels, -1) @ self.cols  # (C_out, N)
        out += self.params["b"][:, None]
        return batch_first(out, batch, out_h, out_w)

    def backward(self, dout, need_dx=True):
        # As Conv2D.backward, with dW2 = dout2 @ cols.T computed as its transpose (_transposed_product), and
        #   dcols = W2.T @ dout2 over col2im's grid: dout2 with zero columns added, which give zero columns of dcols.
        # (Where forward went by shifts, there are no cols: dW by shifts, _dW_by_shifts.)
        xp = backend.xp
        W2 = self.params["W"].reshape(self.out_channels, -1)
        dout2 = channels_first(dout)
        if self.cols is None:
            self._dW_by_shifts(dout)
        else:
            self._transposed_product(self.cols, dout2.T, out=self.grads["W"].reshape(W2.shape))
        dout2.sum(axis=1, out=self.grads["b"])
        if not need_dx:
            return None
        if self.dx_is_a_convolution():
            return self._dx_by_convolution(dout)
        grid_pads = col2im_grid_pads(self.padded_shape, self.kernel_size, self.stride, out_hw=dout.shape[2:])
        dout_grid = channels_first(self._padded("dout grid", dout, grid_pads))  # (C_out, B*Hg*Wg)
        dcols = xp.matmul(W2.T, dout_grid, out=self._work("dcols", (W2.shape[1], dout_grid.shape[1]), dout.dtype))
        dx_padded = col2im_by_phases(dcols, self.padded_shape, self.kernel_size, self.stride, dout.shape[2:])
        return crop(dx_padded, self.pads)

    def dx_is_a_convolution(self):
        """Whether backward gets dx by _dx_by_convolution (stride 1, no more output than input channels, pads
        smaller than the kernel) rather than by col2im. Both give the same dx; this way is faster there."""
        (kh, kw), ((top, bottom), (left, right)) = self.kernel_size, self.pads
        return (self.stride == (1, 1) and self.out_channels <= self.in_channels
                and max(top, bottom) < kh and max(left, right) < kw)

    def by_shifts(self):
        """Whether forward and the weight gradient go by shifted products (_forward_by_shifts) rather than
        im2col: at stride 1 with fewer output than input channels (the decoder's last layer, 32 -> 1)."""
        return self.stride == (1, 1) and self.out_channels < self.in_channels

    def _forward_by_shifts(self, x_padded, out_h, out_w):
        # No columns, which would be C_in*kh*kw rows for a product with a single row of weights (C_out = 1).
        # With stride 1, flatten the padded input as xf = (C_in, P), P = B*Hp*Wp. Output pixel (b, y, x) sits at
        # p = b*Hp*Wp + y*Wp + x, and its tap (i, j) reads xf[:, p + i*Wp + j]: a shift of the whole flat image.
        # So one product gives every tap of every position, taps[(i, j), o, p] = W[o, :, i, j] @ xf[:, p], and
        #   out[o, p] = sum_{i,j} taps[(i, j), o, p + i*Wp + j]
        # is kh*kw adds of shifted rows, each a long contiguous run. Positions p with y >= out_h or x >= out_w
        # (their windows wrap into the next row or image) are computed and thrown away: (Hp*Wp)/(H*W) more work
        # in the product (1.15 at 28x28), small next to what the columns would copy.
        (kh, kw), (_, Wp) = self.kernel_size, self.padded_shape[2:]
        self.xf = channels_first(x_padded)  # (C_in, P): free, x_padded is channel-major
        W_taps = self.params["W"].transpose(2, 3, 0, 1).reshape(kh * kw * self.out_channels, self.in_channels)
        taps = backend.xp.matmul(W_taps, self.xf, out=self._work("taps", (len(W_taps), self.xf.shape[1]),
                                                                  self.xf.dtype))
        taps = taps.reshape(kh * kw, self.out_channels, -1)  # (kh*kw, C_out, P)
        M = taps.shape[2] - (kh - 1) * Wp - (kw - 1)  # positions whose every tap is inside xf; all valid p < M
        out = taps[0, :, :M]  # tap (0, 0), not shifted: the sum is made in place there
        for i, j in itertools.product(range(kh), range(kw)):
            if i or j:
                out += taps[i * kw + j, :, i * Wp + j : i * Wp + j + M]
        batch, _, Hp, _ = self.padded_shape
        out = taps[0].reshape(self.out_channels, batch, Hp, Wp)[:, :, :out_h, :out_w]  # the valid positions
        return (out + self.params["b"][:, None, None, None]).transpose(1, 0, 2, 3)  # a fresh array, channel-major

    def _dW_by_shifts(self, dout):
        # out[o, p] = b[o] + sum_{c,i,j} W[o, c, i, j] xf[c, p + i*Wp + j] over the valid p (see above), so
        #   dW[o, c, i, j] = sum_p dgrid[o, p] xf[c, p + i*Wp + j]      kh*kw products (C_out, M) @ (M, C_in)
        # with dgrid (C_out, P) = dout placed on the same Hp x Wp grid, 0 at the thrown-away positions: dout
        # padded by kh-1 rows below and kw-1 columns right (stride 1: out_h + kh - 1 = Hp). xf's slices are views.
        (kh, kw), (_, Wp) = self.kernel_size, self.padded_shape[2:]
        dgrid = channels_first(self._padded("dout on x's grid", dout, ((0, kh - 1), (0, kw - 1))))
        M = dgrid.shape[1] - (kh - 1) * Wp - (kw - 1)
        dW = self._work("dW taps", (kh, kw, self.out_channels, self.in_channels), dout.dtype)
        for i, j in itertools.product(range(kh), range(kw)):
            backend.xp.matmul(dgrid[:, :M], self.xf[:, i * Wp + j : i * Wp + j + M].T, out=dW[i, j])
        self.grads["W"][...] = dW.transpose(2, 3, 0, 1)

    def _dx_by_convolution(self, dout):
        # With stride 1, dx is itself a convolution:
        #   dx[b, c, Y, X] = sum_{o,i,j} dout[b, o, Y + top - i, X + left - j] W[o, c, i, j]   (0 outside dout)
        # = a stride-1 Conv2D of dout, padded by (kh-1-top, kh-1-bottom) rows and (kw-1-left, kw-1-right) columns,
        # with the kernel turned by 180 degrees and its in/out channels swapped. So im2col gathers what col2im
        # would scatter: dcols is (C_out*kh*kw, B*H*W) instead of (C_in*kh*kw, B*H*W), no bigger as C_out <= C_in,
        # and copying is faster than col2im's adds. For a decoder's last layer (C_out = 1) dcols is 32x smaller.
        (kh, kw), ((top, bottom), (left, right)) = self.kernel_size, self.pads
        batch, _, height, width = self.padded_shape
        height, width = height - top - bottom, width - left - right
        W_turned = self.params["W"][:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(self.in_channels, -1)  # a copy
        full_pads = (kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)
        dout_padded = self._padded("dout padded", dout, full_pads)
        dcols = im2col_into(dout_padded, self.kernel_size, (1, 1), (height, width),
                            out=self._work("dcols", (W_turned.shape[1], batch * height * width), dout.dtype))
        return batch_first(W_turned @ dcols, batch, height, width)


class FastConvTranspose2D(WorkArrays, ConvTranspose2D):
    """ConvTranspose2D (conv.py), the same numbers with fewer copies: its forward's col2im by phases over the
    grid, its backward's im2col into a kept array, the weight gradient as its transpose."""

    def forward(self, x):
        height, width = x.shape[2:]
        padded_shape = self.padded_output_shape(x)
        self.x2 = channels_first(x)  # (C_in, N), N = B*H*W
        W2 = self.params["W"].reshape(self.in_channels, -1)  # (C_in, K), K = C_out*kh*kw
        grid_pads = col2im_grid_pads(padded_shape, self.kernel_size, self.stride, (height, width))
        self.x_grid = channels_first(self._padded("x grid", x, grid_pads))  # x2 with zero columns: col2im's grid
        cols = backend.xp.matmul(W2.T, self.x_grid, out=self._work("taps", (W2.shape[1], self.x_grid.shape[1]),
                                                                    x.dtype))
        out = col2im_by_phases(cols, padded_shape, self.kernel_size, self.stride, (height, width))
        out = crop(out, self.pads)
        out += self.params["b"][:, None, None]
        return out

    def backward(self, dout, need_dx=True):
        # As ConvTranspose2D.backward: dcols = im2col(pad(dout)) (K, N) into a kept array, dW2 = x2 @ dcols.T
        # computed as its transpose dcols @ x2.T (_transposed_product), db, and dx2 = W2 @ dcols (C_in, N).
        W2 = self.params["W"].reshape(self.in_channels, -1)
        dcols = im2col_into(self._padded("dout padded", dout, self.pads), self.kernel_size, self.stride,
                            self.x_shape[2:], out=self._work("cols", (W2.shape[1], self.x2.shape[1]), dout.dtype))
        self._transposed_product(dcols, self.x2.T, out=self.grads["W"].reshape(W2.shape))
        dout.sum(axis=(0, 2, 3), out=self.grads["b"])
        if not need_dx:
            return None
        return batch_first(W2 @ dcols, *self.x_shape[:1], *self.x_shape[2:])
