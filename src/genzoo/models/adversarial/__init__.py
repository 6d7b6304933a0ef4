"""Adversarial models: GAN, DCGAN, InfoGAN, Puzzle-GAN, Progressive GAN and text-to-image (shared base in
:mod:`genzoo.models.adversarial.base`)."""
