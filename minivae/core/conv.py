"""Convolution layers with hand-written backward passes: Conv2D and ConvTranspose2D, one matrix product each, and
Flatten and Reshape to move between images and vectors.

Read conv_reference.py first (what a convolution computes, as loops) and columns.py (im2col and col2im). Layout is
NCHW: x is (B, C, H, W). With the windows of the padded input copied into columns,

    cols = im2col(pad(x))                     (K, N)      K = C_in*kh*kw, N = B*out_h*out_w: one column per window
    out2 = W2 @ cols + b                      (C_out, N)  W2 = W.reshape(C_out, K): each row is one kernel

is the whole convolution of the whole batch, one product. Its output is channel-major, (C_out, N): batch_first
shows it as (B, C_out, out_h, out_w) without copying. The layers follow the contract of layers.py: forward keeps
what backward needs, backward overwrites `grads`. tests/core/test_conv.py checks them against conv_reference.py;
conv_fast.py computes the same with fewer copies, for the convnet (models/convnet.py).
"""

from minivae.core import backend, columns
from minivae.core.layers import Layer, init_weights
from minivae.core.padding import conv_geometry, pair, parse_padding, transposed_geometry


class ConvLayer(Layer):
    """What Conv2D and ConvTranspose2D share: the checked kernel, stride and padding, and the weights.
    weight_shape: (C_out, C_in) for Conv2D, (C_in, C_out) for ConvTranspose2D; fan_in: inputs summed per output,
    per kernel tap (init_weights multiplies it by kh*kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, weight_shape, fan_in, init, rng,
                 dtype):
        super().__init__()
        self.in_channels, self.out_channels, self.init = in_channels, out_channels, init
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = parse_padding(padding)
        kh, kw = self.kernel_size
        W = init_weights(weight_shape + (kh, kw), fan_in * kh * kw, init, rng, dtype)
        self.params = {"W": W, "b": backend.xp.zeros(out_channels, dtype=dtype)}
        self.grads = {k: backend.xp.zeros_like(v) for k, v in self.params.items()}

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, init={self.init!r})")


class Conv2D(ConvLayer):
    """2-D convolution (cross-correlation, as in every deep-learning library): out = W (*) x + b.

    x: (B, C_in, H, W), W: (C_out, C_in, kh, kw), b: (C_out,), out: (B, C_out, H_out, W_out) with
    H_out = floor((H + pad_top + pad_bottom - kh) / stride) + 1, and the same for widths.

    padding: an int or (pad_h, pad_w), added on both sides ('valid' = 0); or 'same' (Keras): H_out = ceil(H / stride),
    the total padding split in two with the odd pixel on the bottom/right. init as in Dense, fan_in = C_in*kh*kw.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, init="he", rng=None,
                 dtype="float32"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, (out_channels, in_channels),
                         in_channels, init, rng, dtype)

    def forward(self, x):
        batch, _, height, width = x.shape
        (out_h, out_w), self.pads = conv_geometry(self.padding, (height, width), self.kernel_size, self.stride)
        x_padded = columns.pad(x, self.pads)  # (B, C_in, Hp, Wp)
        self.padded_shape = x_padded.shape
        self.cols = columns.im2col(x_padded, self.kernel_size, self.stride, (out_h, out_w))  # (K, N)
        out = self.params["W"].reshape(self.out_channels, -1) @ self.cols  # (C_out, K) @ (K, N) -> (C_out, N)
        out += self.params["b"][:, None]
        return columns.batch_first(out, batch, out_h, out_w)  # (B, C_out, out_h, out_w)

    def backward(self, dout, need_dx=True):
        # out2 = W2 @ cols + b, so with dout2 = dout as (C_out, N):
        #   dW2   = dout2 @ cols.T       (C_out, K)
        #   db    = dout2 summed over N  (C_out,)
        #   dcols = W2.T @ dout2         (K, N), and each column goes back onto the pixels it was copied from:
        #   dx    = crop(col2im(dcols))  (B, C_in, H, W)
        W2 = self.params["W"].reshape(self.out_channels, -1)
        dout2 = columns.channels_first(dout)
        self.grads["W"][...] = (dout2 @ self.cols.T).reshape(self.grads["W"].shape)
        dout2.sum(axis=1, out=self.grads["b"])
        if not need_dx:
            return None
        dcols = W2.T @ dout2
        dx_padded = columns.col2im(dcols, self.padded_shape, self.kernel_size, self.stride, dout.shape[2:])
        return columns.crop(dx_padded, self.pads)


class ConvTranspose2D(ConvLayer):
    """Transposed convolution, the upsampling layer of a convolutional decoder.

    x: (B, C_in, H, W), W: (C_in, C_out, kh, kw), b: (C_out,), out: (B, C_out, H_out, W_out) with
    H_out = (H - 1)*stride - 2*padding + kh + output_padding (PyTorch; 'valid' = 0), or H*stride for padding='same'
    (Keras Conv2DTranspose), and the same for widths. Each input pixel adds its kernel, scaled by its value, onto the
    output at `stride` spacing; overlaps add up. output_padding (< stride) only picks between the output sizes
    that the same Conv2D maps back to H. fan_in = C_in*kh*kw / (sh*sw), the average number of terms per output.

    It is Conv2D's backward turned forward: a Conv2D from C_out to C_in channels with this same W (its shape is
    (C_in, C_out, kh, kw) for both) maps an (H_out, W_out) image to (H, W), and this layer's forward is the dx
    that Conv2D's backward returns for dout = x: out = crop(col2im(W2.T @ x2)). Its backward is that Conv2D's
    forward, W2 @ im2col(pad(dout)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, init="he",
                 rng=None, dtype="float32"):
        sh, sw = pair(stride, "stride", 1)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, (in_channels, out_channels),
                         in_channels / (sh * sw), init, rng, dtype)
        self.output_padding = pair(output_padding, "output_padding", 0)
        if self.padding == "same" and any(self.output_padding):
            raise ValueError("output_padding is not supported with padding='same' (the output is H*stride)")
        if any(extra >= step for extra, step in zip(self.output_padding, self.stride, strict=True)):
            raise ValueError(f"output_padding {self.output_padding} must be smaller than stride {self.stride}")

    def padded_output_shape(self, x):
        """(B, C_out, Hp, Wp): the output of x (B, C_in, H, W) with the padding that forward crops off. Keeps
        x's shape and the pads ((top, bottom), (left, right)) for backward."""
        batch, _, height, width = self.x_shape = x.shape
        (out_h, out_w), self.pads = transposed_geometry(self.padding, self.output_padding, (height, width),
                                                        self.kernel_size, self.stride)
        (top, bottom), (left, right) = self.pads
        return batch, self.out_channels, out_h + top + bottom, out_w + left + right

    def forward(self, x):
        height, width = x.shape[2:]
        padded_shape = self.padded_output_shape(x)
        self.x2 = columns.channels_first(x)  # (C_in, N), N = B*H*W: one column per input pixel
        W2 = self.params["W"].reshape(self.in_channels, -1)  # (C_in, K), K = C_out*kh*kw
        cols = W2.T @ self.x2  # (K, N): column n is every input pixel's kernel, scaled by its C_in values
        out = columns.crop(columns.col2im(cols, padded_shape, self.kernel_size, self.stride, (height, width)),
                           self.pads)
        return out + self.params["b"][:, None, None]  # (B, C_out, out_h, out_w)

    def backward(self, dout, need_dx=True):
        # The adjoint of crop(col2im(.)) is im2col(pad(.)); with W2 = W.reshape(C_in, K) and x2 = x as (C_in, N):
        #   dcols = im2col(pad(dout))     (K, N)
        #   dW2   = x2 @ dcols.T          (C_in, K)
        #   db    = dout summed over b, y, x   (C_out,)
        #   dx2   = W2 @ dcols            (C_in, N): Conv2D's forward applied to dout
        W2 = self.params["W"].reshape(self.in_channels, -1)
        dcols = columns.im2col(columns.pad(dout, self.pads), self.kernel_size, self.stride, self.x_shape[2:])
        self.grads["W"][...] = (self.x2 @ dcols.T).reshape(self.grads["W"].shape)
        dout.sum(axis=(0, 2, 3), out=self.grads["b"])
        if not need_dx:
            return None
        return columns.batch_first(W2 @ dcols, self.x_shape[0], *self.x_shape[2:])

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
