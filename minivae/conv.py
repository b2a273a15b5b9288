"""Convolution layers with hand-written backward passes: Conv2D, ConvTranspose2D, Flatten and Reshape. What they
compute is defined first, as plain loops, in conv_reference.py (read it before this file); tests/test_conv.py
checks these layers against it. convvae.py builds tutorial 003's convolutional VAE from them.

Layout is NCHW: x is (B, C, H, W). A convolution slides a (C, kh, kw) kernel over the (padded) image, and each
output pixel is the dot product of the kernel with the window under it. im2col (columns.py, read it first)
copies every window of the whole batch into a column, so that out = W.reshape(C_out, C*kh*kw) @ cols is ONE
(C_out, K) @ (K, B*L) product for the batch; col2im, its adjoint, adds columns back onto their pixels. A
transposed convolution uses the same pair the other way round. The layers follow the contract of layers.py:
forward keeps what backward needs, backward overwrites `grads`.

Speed. At batch 128 the columns are big (C*9 times the image: 115 MB for 32 channels at 28x28), so:
* One large 2-D product per pass, never B small ones: a batched matmul of (C_out, K) @ (K, L) per image runs
  BLAS well below its speed on one (C_out, K) @ (K, B*L).
* The product's output is channel-major, (C_out, B*L). Rather than copy it into NCHW order, the layer returns
  it as a transposed *view*: its shape is (B, C, H, W), its memory (C, B, H, W). NumPy follows the strides, so
  nobody can tell, except that the next layer's "channels first" reshape (`columns.channels_first`) is then free.
* Big work arrays (the columns, the padded input) are kept in the layer and reused from step to step: a fresh
  100 MB array costs ~10 ms of page faults every time it is first written. The padded copy keeps its zero
  border, so only its inside is written.
* col2im is kh*kw adds of long rows (9 for a 3x3 kernel), each over the whole batch, one per tap into its
  stride phase (columns.col2im); and where Conv2D's input gradient can be had as a convolution instead (stride 1,
  no more output than input channels), it is: an im2col and a product, no col2im (see
  Conv2D._dx_by_convolution).
* Where a stride-1 Conv2D has fewer output than input channels (the decoder's last layer, 32 -> 1), it builds
  no columns at all: one product gives every tap at every position, and kh*kw shifted adds sum them
  (Conv2D._forward_by_shifts).
* Weight gradients are computed as their transposes (`_transposed_product`): for these shapes OpenBLAS is
  15-25% faster at cols @ dout2.T than at dout2 @ cols.T.
* With 2 or more threads, the copies (im2col, padding), col2im's adds and ReLU's passes are cut into one block
  of channels per thread (threads.in_slices); BLAS threads the products itself.
The copies that remain (im2col: rows of out_w floats, 14 or 28) are most of what these layers spend outside
their products; NumPy copies such short rows at about one float per nanosecond.
"""

import itertools

from minivae import backend, columns, threads
from minivae.conv_reference import _out_size, _pair, _same_pads
from minivae.layers import Layer, init_weights


class _ConvBase(Layer):
    """What Conv2D and ConvTranspose2D share: checked kernel/stride/padding, the weight initialisation, and the
    work arrays kept between calls."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, weight_shape, fan_in, init, rng,
                 dtype):
        super().__init__()
        self.in_channels, self.out_channels, self.init = in_channels, out_channels, init
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
        self.padding = "same" if padding == "same" else _pair(0 if padding == "valid" else padding, "padding", 0)
        kh, kw = self.kernel_size
        W = init_weights(weight_shape + (kh, kw), fan_in * kh * kw, init, rng, dtype)
        self.params = {"W": W, "b": backend.xp.zeros(out_channels, dtype=dtype)}
        self.grads = {k: backend.xp.zeros_like(v) for k, v in self.params.items()}
        self.work = {}

    def _work(self, name, shape, dtype):
        """An uninitialised array kept in the layer and reused while shape and dtype stay the same (see Speed)."""
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
        threads.in_slices(backend.xp.copyto, columns.crop(array, pads), x)  # only the inside: the border stays 0
        return array

    def _transposed_product(self, a, b, out):
        """out = (a @ b).T, for a weight gradient: dW2 = dout2 @ cols.T is written as (cols @ dout2.T).T.
        The same numbers; BLAS (OpenBLAS) runs this orientation of these shapes 15-25% faster (measured at batch
        16 on 1 thread: the 64 -> 64 layers' 2.5 -> 2.2 ms, the stride-2 layers' 1.8 -> 1.4 ms)."""
        product = backend.xp.matmul(a, b, out=self._work("dW transposed", (a.shape[0], b.shape[1]), a.dtype))
        out[...] = product.T
        return out

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, init={self.init!r})")


class Conv2D(_ConvBase):
    """2-D convolution (cross-correlation, as in every deep-learning library): out = W (*) x + b.

    x: (B, C_in, H, W), W: (C_out, C_in, kh, kw), b: (C_out,), out: (B, C_out, H_out, W_out) with
    H_out = floor((H + pad_top + pad_bottom - kh) / stride) + 1, and the same for widths.

    padding: an int or (pad_h, pad_w), added on both sides ("valid" = 0); or "same" (Keras): H_out = ceil(H / stride),
    the total padding split in two with the odd pixel on the bottom/right. init as in Dense, fan_in = C_in*kh*kw.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, init="he", rng=None,
                 dtype="float32"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, (out_channels, in_channels),
                         in_channels, init, rng, dtype)

    def _pads(self, height, width):
        """((top, bottom), (left, right)) for an input of this size."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if self.padding == "same":
            return _same_pads(height, kh, sh), _same_pads(width, kw, sw)
        pad_h, pad_w = self.padding
        return (pad_h, pad_h), (pad_w, pad_w)

    def forward(self, x):
        batch, _, height, width = x.shape
        self.pads = self._pads(height, width)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        out_h, out_w = _out_size(height, self.pads[0], kh, sh), _out_size(width, self.pads[1], kw, sw)
        x_padded = self._padded("x padded", x, self.pads)
        self.padded_shape = x_padded.shape
        if self.by_shifts():
            self.cols = None
            return self._forward_by_shifts(x_padded, out_h, out_w)
        cols_shape = (self.in_channels * kh * kw, batch * out_h * out_w)  # (K, B*L), L = out_h*out_w
        self.cols = columns.im2col(x_padded, self.kernel_size, self.stride, (out_h, out_w),
                           out=self._work("cols", cols_shape, x.dtype))
        out = self.params["W"].reshape(self.out_channels, -1) @ self.cols  # (C_out, B*L)
        out += self.params["b"][:, None]
        return columns.batch_first(out, batch, out_h, out_w)

    def backward(self, dout, need_dx=True):
        # With K = C_in*kh*kw, N = B*out_h*out_w and W2 = W.reshape(C_out, K): out2 = W2 @ cols + b, so with
        # dout2 = dout as (C_out, N):
        #   dW2 = dout2 @ cols.T          (C_out, K), computed as its transpose cols @ dout2.T (_transposed_product)
        #   db  = dout2 summed over N     (C_out,)
        #   dcols = W2.T @ dout2          (K, N), and dx = crop(col2im(dcols))   (B, C_in, H, W)
        # (dcols over col2im's grid: dout2 with zero columns added, which give zero columns of dcols)
        # (Where forward went by shifts, there are no cols: dW by shifts, _dW_by_shifts.)
        xp = backend.xp
        W2 = self.params["W"].reshape(self.out_channels, -1)
        dout2 = columns.channels_first(dout)
        if self.cols is None:
            self._dW_by_shifts(dout)
        else:
            self._transposed_product(self.cols, dout2.T, out=self.grads["W"].reshape(W2.shape))
        dout2.sum(axis=1, out=self.grads["b"])
        if not need_dx:
            return None
        if self.dx_is_a_convolution():
            return self._dx_by_convolution(dout)
        grid_pads = columns.col2im_grid_pads(self.padded_shape, self.kernel_size, self.stride, out_hw=dout.shape[2:])
        dout_grid = columns.channels_first(self._padded("dout grid", dout, grid_pads))  # (C_out, B*Hg*Wg)
        dcols = xp.matmul(W2.T, dout_grid, out=self._work("dcols", (W2.shape[1], dout_grid.shape[1]), dout.dtype))
        dx_padded = columns.col2im(dcols, self.padded_shape, self.kernel_size, self.stride, dout.shape[2:])
        return columns.crop(dx_padded, self.pads)

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
        # Faster where C_out < C_in (the decoder's 32 -> 1 layer, batch 16: forward and backward 4.6 -> 1.3 ms): no
        # columns, which would be C_in*kh*kw rows (14 MB there) for a product with a single row of weights.
        # With stride 1, flatten the padded input as xf = (C_in, P), P = B*Hp*Wp. Output pixel (b, y, x) sits at
        # p = b*Hp*Wp + y*Wp + x, and its tap (i, j) reads xf[:, p + i*Wp + j]: a shift of the whole flat image.
        # So one product gives every tap of every position, taps[(i, j), o, p] = W[o, :, i, j] @ xf[:, p], and
        #   out[o, p] = sum_{i,j} taps[(i, j), o, p + i*Wp + j]
        # is kh*kw adds of shifted rows, each a long contiguous run. Positions p with y >= out_h or x >= out_w
        # (their windows wrap into the next row or image) are computed and thrown away: (Hp*Wp)/(H*W) more work
        # in the product (1.15 at 28x28), small next to what the columns would copy.
        (kh, kw), (_, Wp) = self.kernel_size, self.padded_shape[2:]
        self.xf = columns.channels_first(x_padded)  # (C_in, P): free, x_padded is channel-major
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
        dgrid = columns.channels_first(self._padded("dout on x's grid", dout, ((0, kh - 1), (0, kw - 1))))
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
        # and copying is faster than col2im's adds. For a decoder's last layer (C_out = 1) dcols is 32x smaller,
        # and the rank-1 product W2.T @ dout2, which BLAS does slowly, is gone.
        (kh, kw), ((top, bottom), (left, right)) = self.kernel_size, self.pads
        batch, _, height, width = self.padded_shape
        height, width = height - top - bottom, width - left - right
        W_turned = self.params["W"][:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(self.in_channels, -1)  # a copy
        full_pads = (kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)
        dout_padded = self._padded("dout padded", dout, full_pads)
        dcols = columns.im2col(dout_padded, self.kernel_size, (1, 1), (height, width),
                       out=self._work("dcols", (W_turned.shape[1], batch * height * width), dout.dtype))
        return columns.batch_first(W_turned @ dcols, batch, height, width)


class ConvTranspose2D(_ConvBase):
    """Transposed convolution, the upsampling layer of a convolutional decoder.

    x: (B, C_in, H, W), W: (C_in, C_out, kh, kw), b: (C_out,), out: (B, C_out, H_out, W_out) with
    H_out = (H - 1)*stride - 2*padding + kh + output_padding (PyTorch; "valid" = 0), or H*stride for padding="same"
    (Keras Conv2DTranspose), and the same for widths. Each input pixel adds its kernel, scaled by its value, onto the
    output at `stride` spacing; overlaps add up. output_padding (< stride) only picks between the output sizes
    that the same Conv2D maps back to H. fan_in = C_in*kh*kw / (sh*sw), the average number of terms per output.
    """

    # Forward is exactly Conv2D's input gradient: a Conv2D from C_out to C_in channels with this same W (its
    # shape is (C_in, C_out, kh, kw) for both) maps an (H_out, W_out) image to (H, W), and out = crop(col2im(W2.T @ x))
    # is the dx it returns for dout = x. Backward's dx is that Conv2D's forward, W2 @ im2col(pad(dout)).

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, init="he",
                 rng=None, dtype="float32"):
        sh, sw = _pair(stride, "stride", 1)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, (in_channels, out_channels),
                         in_channels / (sh * sw), init, rng, dtype)
        self.output_padding = _pair(output_padding, "output_padding", 0)
        if self.padding == "same" and any(self.output_padding):
            raise ValueError("output_padding is not supported with padding='same' (the output is H*stride)")
        if any(extra >= step for extra, step in zip(self.output_padding, self.stride, strict=True)):
            raise ValueError(f"output_padding {self.output_padding} must be smaller than stride {self.stride}")

    def _geometry(self, height, width):
        """(H_out, W_out) and the pads ((top, bottom), (left, right)) of the Conv2D this layer is the adjoint of."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if self.padding == "same":
            out_h, out_w = height * sh, width * sw
            return (out_h, out_w), (_same_pads(out_h, kh, sh), _same_pads(out_w, kw, sw))
        (pad_h, pad_w), (extra_h, extra_w) = self.padding, self.output_padding
        out_h = (height - 1) * sh - 2 * pad_h + kh + extra_h
        out_w = (width - 1) * sw - 2 * pad_w + kw + extra_w
        if min(out_h, out_w) < 1:
            raise ValueError(f"padding {self.padding} leaves no output for an input of size {(height, width)}")
        # Padded, the output is (H-1)*stride + kh + output_padding tall: col2im fills all but the last output_padding
        # rows, which get only the bias (as in PyTorch); the matching Conv2D never reads them, so both stay adjoint.
        return (out_h, out_w), ((pad_h, pad_h), (pad_w, pad_w))

    def forward(self, x):
        batch, _, height, width = x.shape
        (out_h, out_w), self.pads = self._geometry(height, width)
        (top, bottom), (left, right) = self.pads
        padded_shape = (batch, self.out_channels, out_h + top + bottom, out_w + left + right)
        self.x_shape = x.shape
        self.x2 = columns.channels_first(x)  # (C_in, N), N = B*H*W
        W2 = self.params["W"].reshape(self.in_channels, -1)  # (C_in, K), K = C_out*kh*kw
        grid_pads = columns.col2im_grid_pads(padded_shape, self.kernel_size, self.stride, (height, width))
        self.x_grid = columns.channels_first(self._padded("x grid", x, grid_pads))  # x2 with zero columns, see col2im
        cols = backend.xp.matmul(W2.T, self.x_grid, out=self._work("taps", (W2.shape[1], self.x_grid.shape[1]),
                                                                    x.dtype))
        out = columns.col2im(cols, padded_shape, self.kernel_size, self.stride, (height, width))
        out = columns.crop(out, self.pads)
        out += self.params["b"][:, None, None]
        return out

    def backward(self, dout, need_dx=True):
        # The adjoint of crop(col2im(.)) is im2col(pad(.)); with W2 = W.reshape(C_in, K) and x2 = x as (C_in, N):
        #   dcols = im2col(pad(dout))     (K, N)
        #   dW2   = x2 @ dcols.T          (C_in, K), computed as its transpose dcols @ x2.T (_transposed_product)
        #   db    = dout summed over b, y, x   (C_out,)
        #   dx2   = W2 @ dcols            (C_in, N): Conv2D's forward applied to dout
        W2 = self.params["W"].reshape(self.in_channels, -1)
        dcols = columns.im2col(self._padded("dout padded", dout, self.pads), self.kernel_size, self.stride,
                               self.x_shape[2:], out=self._work("cols", (W2.shape[1], self.x2.shape[1]), dout.dtype))
        self._transposed_product(dcols, self.x2.T, out=self.grads["W"].reshape(W2.shape))
        dout.sum(axis=(0, 2, 3), out=self.grads["b"])
        if not need_dx:
            return None
        return columns.batch_first(W2 @ dcols, *self.x_shape[:1], *self.x_shape[2:])

    def __repr__(self):
        return super().__repr__()[:-1] + f", output_padding={self.output_padding})"


class Flatten(Layer):
    """(B, C, H, W) -> (B, C*H*W), or any (B, ...) -> (B, prod(...)); backward reshapes back."""

    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, need_dx=True):
        # A reshape moves no numbers, so its gradient is the same reshape undone: dx = dout.reshape(x.shape)
        return dout.reshape(self.x_shape)


class Reshape(Layer):
    """(B, *in_shape) -> (B, *shape), e.g. Reshape((64, 7, 7)) turns a Dense output into an image; and back."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape((x.shape[0], *self.shape))

    def backward(self, dout, need_dx=True):
        # A reshape moves no numbers, so its gradient is the same reshape undone: dx = dout.reshape(x.shape)
        return dout.reshape(self.x_shape)

    def __repr__(self):
        return f"Reshape({self.shape})"
