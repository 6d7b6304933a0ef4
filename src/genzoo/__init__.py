"""genzoo: the classic deep generative models, correct, fast and measured."""

from genzoo import mkl_warmup as _mkl_warmup  # noqa: F401  (first: fixes MKL's kernel choice before any computation)

# isort: split
from genzoo import models as _models  # noqa: F401  (registers every model)
from genzoo.api import create, evaluate, list_models, load, sample_images, train
from genzoo.errors import GenzooError

__all__ = ["GenzooError", "create", "evaluate", "list_models", "load", "sample_images", "train"]
__version__ = "0.1.0"
