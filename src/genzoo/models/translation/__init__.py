"""Translation models: CycleGAN and StarGAN (shared base in :mod:`genzoo.models.translation.base`)."""
