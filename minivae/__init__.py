"""minivae: a variational autoencoder in NumPy with every gradient written by hand.

Reading order: backend -> layers -> gaussian -> losses -> optim -> vae -> gradcheck, then the rest as the
README's "Reading order" lists it.
"""

import os

__version__ = "0.1.0"

# Read by OpenBLAS when NumPy loads it, so it must come first: after each matrix product OpenBLAS's idle
# threads then sleep at once instead of spinning for ~0.1 s on the core that minivae's elementwise threads
# need next (threads.py). Measured on 2 cores: the MLP step 10% faster at 2 threads, the conv step no slower.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
