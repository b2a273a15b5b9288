"""minivae: a variational autoencoder in NumPy with every gradient written by hand.

Reading order: backend -> layers -> gaussian -> losses -> optim -> vae -> gradcheck, then data and train.
"""

__version__ = "0.1.0"
