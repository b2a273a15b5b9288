"""Convolution layers with hand-written backward passes: Conv2D, ConvTranspose2D, Flatten and Reshape.

Layout is NCHW: x is (B, C, H, W). A convolution slides a (C, kh, kw) kernel over the (padded) image, and each
output pixel is the dot product of the kernel with the window under it. im2col turns all of them into one matrix
product by copying every window into a column:

    cols[b, (c, i, j), (y, x)] = x_padded[b, c, y*sh + i, x*sw + j]        cols: (B, C*kh*kw, out_h*out_w)

so that out[b] = W.reshape(C_out, C*kh*kw) @ cols[b]. col2im is its adjoint: it adds every column entry back
onto the pixel it was copied from (a pixel shared by overlapping windows receives the sum), which is exactly the
backward pass of "copy into windows". A transposed convolution uses the same pair the other way round.
The layers follow the contract of layers.py: forward keeps what backward needs, backward overwrites `grads`.
"""

import numbers

from minivae import backend
from minivae.layers import Layer, init_weights


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


def _pad(x, pads):
    """x (B, C, H, W) with zeros around: pads = ((top, bottom), (left, right)). x itself when all are 0."""
    if not any(pads[0] + pads[1]):
        return x
    return backend.xp.pad(x, ((0, 0), (0, 0), *pads))


def _crop(x_padded, pads):
    """The inverse of _pad (a view): cut pads = ((top, bottom), (left, right)) off a (B, C, H, W) array."""
    (top, bottom), (left, right) = pads
    height, width = x_padded.shape[2:]
    return x_padded[:, :, top : height - bottom, left : width - right]


def im2col(x_padded, kernel, stride, out_hw):
    """Every kernel window of x_padded (B, C, Hp, Wp) as a column: cols (B, C*kh*kw, out_h*out_w)."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    batch, channels = x_padded.shape[:2]
    s_b, s_c, s_y, s_x = x_padded.strides
    # A view, nothing copied yet: windows[b, c, i, j, y, x] = x_padded[b, c, y*sh + i, x*sw + j].
    windows = backend.xp.lib.stride_tricks.as_strided(
        x_padded, shape=(batch, channels, kh, kw, out_h, out_w), strides=(s_b, s_c, s_y, s_x, s_y * sh, s_x * sw)
    )
    return windows.reshape(batch, channels * kh * kw, out_h * out_w)  # the one copy


def col2im(cols, padded_shape, kernel, stride, out_hw):
    """The adjoint of im2col: add every entry of cols (B, C*kh*kw, out_h*out_w) back onto the pixel of a zero
    (B, C, Hp, Wp) array that im2col copied it from. One vectorised add per kernel offset (kh*kw in all)."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    batch, channels = padded_shape[:2]
    x_padded = backend.xp.zeros(padded_shape, dtype=cols.dtype)
    windows = cols.reshape(batch, channels, kh, kw, out_h, out_w)
    for i in range(kh):
        for j in range(kw):
            # tap (i, j) of output pixel (y, x) was read from x_padded[y*sh + i, x*sw + j]: add it back there
            x_padded[:, :, i : i + sh * out_h : sh, j : j + sw * out_w : sw] += windows[:, :, i, j]
    return x_padded


class _ConvBase(Layer):
    """What Conv2D and ConvTranspose2D share: checked kernel/stride/padding and the weight initialisation."""

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
        x_padded = _pad(x, self.pads)
        self.padded_shape = x_padded.shape
        self.cols = im2col(x_padded, self.kernel_size, self.stride, (out_h, out_w))  # (B, C_in*kh*kw, L)
        out = self.params["W"].reshape(self.out_channels, -1) @ self.cols  # (B, C_out, L), L = out_h*out_w
        out += self.params["b"][:, None]
        return out.reshape(batch, self.out_channels, out_h, out_w)

    def backward(self, dout, need_dx=True):
        # With K = C_in*kh*kw, L = out_h*out_w and W2 = W.reshape(C_out, K): out[b] = W2 @ cols[b] + b, so
        #   dW2[o, k] = sum_{b,l} dout[b, o, l] cols[b, k, l]   (C_out, K): one tensordot over b and l
        #   db[o]     = sum_{b,l} dout[b, o, l]                 (C_out,)
        #   dcols[b]  = W2.T @ dout[b]                          (B, K, L), and dx = crop(col2im(dcols)) (B, C_in, H, W)
        xp = backend.xp
        dout_flat = dout.reshape(dout.shape[0], self.out_channels, -1)  # (B, C_out, L)
        dW = xp.tensordot(dout_flat, self.cols, axes=([0, 2], [0, 2]))  # (C_out, K)
        self.grads["W"][...] = dW.reshape(self.grads["W"].shape)
        dout_flat.sum(axis=(0, 2), out=self.grads["b"])
        if not need_dx:
            return None
        dcols = self.params["W"].reshape(self.out_channels, -1).T @ dout_flat
        dx_padded = col2im(dcols, self.padded_shape, self.kernel_size, self.stride, dout.shape[2:])
        return _crop(dx_padded, self.pads)


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
        self.x_flat = x.reshape(batch, self.in_channels, -1)  # (B, C_in, H*W)
        cols = self.params["W"].reshape(self.in_channels, -1).T @ self.x_flat  # (B, C_out*kh*kw, H*W)
        out = _crop(col2im(cols, padded_shape, self.kernel_size, self.stride, (height, width)), self.pads)
        out += self.params["b"][:, None, None]
        return out

    def backward(self, dout, need_dx=True):
        # The adjoint of crop(col2im(.)) is im2col(pad(.)); with K = C_out*kh*kw and W2 = W.reshape(C_in, K):
        #   dcols     = im2col(pad(dout))                       (B, K, H*W)
        #   dW2[i, k] = sum_{b,l} x[b, i, l] dcols[b, k, l]     (C_in, K): one tensordot over b and l
        #   db[o]     = sum of dout[b, o, y, x] over b, y, x    (C_out,)
        #   dx[b]     = W2 @ dcols[b]                           (B, C_in, H*W): Conv2D's forward applied to dout
        xp = backend.xp
        dcols = im2col(_pad(dout, self.pads), self.kernel_size, self.stride, self.x_shape[2:])
        dW = xp.tensordot(self.x_flat, dcols, axes=([0, 2], [0, 2]))  # (C_in, K)
        self.grads["W"][...] = dW.reshape(self.grads["W"].shape)
        dout.sum(axis=(0, 2, 3), out=self.grads["b"])
        if not need_dx:
            return None
        return (self.params["W"].reshape(self.in_channels, -1) @ dcols).reshape(self.x_shape)

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
