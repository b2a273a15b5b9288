"""The models: how the pieces of core/ make a VAE and its `step`.

Read vae.py first (the VAE, optionally conditioned on a class, and `mlp_vae`), then iwae.py (training on K samples
of z: the K-sample ELBO and the importance-weighted bound), convnet.py (tutorial 003's convnet), classifier.py
(q(y|x)) and m2.py (the semi-supervised M2: a classifier and a conditional VAE trained together).

Uses: core/ only. Nothing here knows of gradient checks, runs, figures or commands.
"""
