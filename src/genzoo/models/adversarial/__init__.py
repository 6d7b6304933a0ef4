"""Adversarial models: GAN, DCGAN, InfoGAN (and later the conditional and translation GANs)."""
