"""How much a convolution pads its input and how big its output is: the arithmetic every convolution file shares.

A 2-D convolution slides a kh x kw kernel over the image `stride` pixels at a time, after padding it with zeros.
Along one axis of n pixels, padded with p_before and p_after, it fits

    out = floor((n + p_before + p_after - k) / stride) + 1          windows.

`padding` is given the Keras or the PyTorch way: an int or a pair (the same on both sides of an axis), 'valid'
(no padding), or 'same' (Keras): out = ceil(n / stride), the total padding split in two with the odd pixel after.
A transposed convolution maps sizes the other way (`transposed_geometry`).
"""

import numbers


def pair(value, what, minimum):
    """(v, v) for an int v, or a pair of ints; each at least `minimum`. Else ValueError naming `what`."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) and v >= minimum for v in values):
        raise ValueError(f"{what} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def parse_padding(padding):
    """'same', or (pad_h, pad_w) for an int, a pair or 'valid' (0). Else ValueError."""
    if isinstance(padding, str) and padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
    return "same" if padding == "same" else pair(0 if padding == "valid" else padding, "padding", 0)


def same_pads(in_size, kernel, stride):
    """Keras/TensorFlow 'same' padding of one axis: out = ceil(in / stride); the odd pixel goes after."""
    out_size = -(-in_size // stride)
    total = max((out_size - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


def out_size(in_size, pads, kernel, stride):
    """floor((in + pad_before + pad_after - kernel) / stride) + 1 output pixels along one axis."""
    size = (in_size + pads[0] + pads[1] - kernel) // stride + 1
    if size < 1:
        raise ValueError(f"input size {in_size} with padding {pads} is smaller than the kernel ({kernel})")
    return size


def conv_geometry(padding, in_hw, kernel, stride):
    """A Conv2D's output size and padding for an input of in_hw = (H, W), padding as parse_padding returns it:
    ((out_h, out_w), ((top, bottom), (left, right)))."""
    (height, width), (kh, kw), (sh, sw) = in_hw, kernel, stride
    if padding == "same":
        pads = same_pads(height, kh, sh), same_pads(width, kw, sw)
    else:
        pads = (padding[0], padding[0]), (padding[1], padding[1])
    return (out_size(height, pads[0], kh, sh), out_size(width, pads[1], kw, sw)), pads


def transposed_geometry(padding, output_padding, in_hw, kernel, stride):
    """A ConvTranspose2D's output size and the padding of the Conv2D it is the adjoint of, for an input of
    in_hw = (H, W): ((out_h, out_w), ((top, bottom), (left, right))).

    H_out = (H - 1)*stride - 2*padding + kh + output_padding (PyTorch; 'valid' = 0), or H*stride for 'same'
    (Keras' Conv2DTranspose: then padded like the 'same' Conv2D that maps H_out back to H)."""
    (height, width), (kh, kw), (sh, sw) = in_hw, kernel, stride
    if padding == "same":
        out_h, out_w = height * sh, width * sw
        return (out_h, out_w), (same_pads(out_h, kh, sh), same_pads(out_w, kw, sw))
    (pad_h, pad_w), (extra_h, extra_w) = padding, output_padding
    out_h = (height - 1) * sh - 2 * pad_h + kh + extra_h
    out_w = (width - 1) * sw - 2 * pad_w + kw + extra_w
    if min(out_h, out_w) < 1:
        raise ValueError(f"padding {padding} leaves no output for an input of size {(height, width)}")
    # Padded, the output is (H-1)*stride + kh + output_padding tall: the kernels cover all but the last
    # output_padding rows, which get only the bias (as in PyTorch); the matching Conv2D never reads them.
    return (out_h, out_w), ((pad_h, pad_h), (pad_w, pad_w))
