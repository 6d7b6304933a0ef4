"""Latent variable models: VAE and AAE (shared base in :mod:`genzoo.models.latent.base`)."""
