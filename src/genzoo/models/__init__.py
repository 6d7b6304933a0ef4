"""Model families; importing this package registers every model."""

import importlib
import pkgutil


def _register_all() -> None:
    # Each model file registers itself with @models.register; importing them all keeps one source of truth.
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)


_register_all()
