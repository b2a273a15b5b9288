"""The math: arrays in, arrays out, every derivative written by hand.

Read in this order: backend (NumPy or CuPy, chosen here and nowhere else), layers (Dense, ReLU, Sigmoid, Tanh,
Sequential), gaussian (the sampler and the KL), losses (with continuous_bernoulli), optim (SGD, RMSprop, Adam),
then the convolutions: padding (sizes), conv_reference (what a convolution is, as loops), columns (im2col and its
adjoint), conv (Conv2D and ConvTranspose2D as one matrix product each).

Beside those plain files sit their fast twins, same contract and tested equal: layers_fast, optim_fast, conv_fast,
losses_fast and gaussian_fast, with threads (the CPU thread pool they share) and kernels (the GPU's fused kernels:
on CuPy a chain of elementwise passes runs as one). A reader can skip all of them.

Uses: NumPy (through backend.xp) and nothing else of minivae's. Nothing here knows of models, runs or commands.
"""
