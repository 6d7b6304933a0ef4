"""What every model is: an ``nn.Module`` with a typed config, a family protocol and one training hook.

A model knows nothing of files, the CLI or Lightning. The engine calls ``training_step(batch, step)`` with a
:class:`Step` whose ``optimize(loss, name)`` does zero-grad, backward and the optimizer step, so adversarial
alternation and extra updates live in the model's own file.

To add a model, subclass :class:`GenerativeModel` (or a family base, which fills most of this in) and define:

- ``name`` (set by ``@models.register("name")``), ``family``, and ``Config``: a dataclass subclassing
  :class:`TrainConfig`, every field a setting ``--set key=value`` can change;
- ``__init__(config, image_shape)``: build the networks (their attribute names are the checkpoint's keys);
- ``training_step(batch, step)``: the objective, one ``step.optimize(loss, name)`` per update, returning the
  values to log (detached scalars);
- ``sample(n, **options)`` and ``evaluate(x, labels, levels, data)``.

and may override:

- ``input_kind`` (what the data layer prepares: "binary", "dequantized", "signed", "levels" or "unit"),
  ``default_data``, ``precision`` (a measured preference), ``default_batches`` (the budget it was measured at);
- ``configure_optimizers()``: a dict of optimizers by name (default: one Adam "model" over every parameter);
- the schedule: a ``decay_fraction`` default in ``Config`` (the rates decay linearly to 0 over that share of the
  planned batches; the engine sets them before each batch) and ``decayed_optimizers`` (which optimizers follow
  it; default all);
- ``figures(x)``: extra images for the run directory;
- ``settings_for_data(dataset, settings)``: settings read off the data before the model is built (stored in the
  run's config; the translation models take their attribute names from it).

``genzoo.models.template`` is the smallest complete model.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from genzoo.data.transforms import InputKind
from genzoo.errors import GenzooError

FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(
    parameters: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0
) -> torch.optim.Adam:
    """Adam, with torch's fused kernel where the parameters live on a device that has one (one pass over each
    parameter per update instead of a chain of whole-tensor temporaries). The update is the same algorithm; it is
    faster where layers are large (benchmarks/log/speed.md, "Adam's fused kernel"). ``parameters`` are tensors or
    parameter groups, as torch.optim takes them; ``weight_decay`` adds that multiple of each weight to its gradient
    (an L2 penalty)."""
    items = [{**g, "params": list(g["params"])} if isinstance(g, dict) else g for g in parameters]  # one pass
    tensors = [t for item in items for t in (item["params"] if isinstance(item, dict) else [item])]
    fused = bool(tensors) and all(t.device.type in FUSED_ADAM_DEVICES for t in tensors)
    optimizer = torch.optim.Adam(items, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)
    if fused:
        optimizer.register_load_state_dict_post_hook(_lay_out_state_like_parameters)
    return optimizer


def _lay_out_state_like_parameters(optimizer: torch.optim.Optimizer) -> None:
    """The fused kernel walks a parameter, its gradient and its moments as flat memory, so they must share one
    layout: a contiguous moment loaded for a channels_last parameter would have its elements mixed up (the test
    shows it). torch's save / load keeps strides, so genzoo's own checkpoints arrive laid out right; this guards
    states from elsewhere. Each loaded moment is laid out like its parameter."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == parameter.shape and value.stride() != parameter.stride():
                    state[key] = torch.empty_like(parameter).copy_(value)


class Step(Protocol):
    """What the engine hands a model at each training batch."""

    batch_index: int  # batches trained on before this one (resume-safe)
    max_batches: int | None  # planned total, for schedules; None when training by epochs only

    def optimize(self, loss: Tensor, optimizer: str = "model") -> None: ...


class DirectStep:
    """A :class:`Step` without Lightning, for tests, benchmarks and notebooks that call ``training_step`` by hand;
    the learning rates are those of batch ``batch_index``.

    ``calls`` records the optimizer names in the order the model used them.
    """

    def __init__(self, model: GenerativeModel, batch_index: int = 0, max_batches: int | None = None) -> None:
        self.optimizers = model.configure_optimizers()
        self.batch_index, self.max_batches = batch_index, max_batches
        schedule_learning_rates(model, self.optimizers, batch_index, max_batches)  # as the engine does per batch
        self.calls: list[str] = []

    def optimize(self, loss: Tensor, optimizer: str = "model") -> None:
        self.calls.append(optimizer)
        self.optimizers[optimizer].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[optimizer].step()


@dataclass
class TrainConfig:
    """Fields every model config has (subclass it and add the model's own)."""

    lr: float = 1e-3
    # share of the planned batches (--max-steps) over which every scheduled rate decays linearly to 0 (CycleGAN's
    # schedule); 0 keeps the rates constant
    decay_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must be between 0 and 1, got {self.decay_fraction}")


EVALUATION_SEED = 0


@contextlib.contextmanager
def seeded_evaluation(device: torch.device) -> Iterator[None]:
    """An evaluation's random draws (importance samples, a Parzen window's samples) from one fixed seed, so the
    same weights score the same every time; the caller's random streams are restored afterwards."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(EVALUATION_SEED)
        yield


def linear_decay(batch_index: int, max_batches: int | None, decay_fraction: float) -> float:
    """The learning-rate factor of CycleGAN's schedule: 1 for the first part of training, then linearly to 0
    over the last ``decay_fraction`` of ``max_batches`` (100 + 100 epochs in the paper); 1 when training by
    epochs (the total is unknown)."""
    if not max_batches or decay_fraction <= 0:
        return 1.0
    start = max_batches * (1 - decay_fraction)
    return float(min(1.0, max(0.0, (max_batches - batch_index) / max(max_batches - start, 1))))


def schedule_learning_rates(
    model: GenerativeModel, optimizers: dict[str, torch.optim.Optimizer], batch_index: int, max_batches: int | None
) -> float:
    """Sets the rate of every optimizer the model schedules (``decayed_optimizers``) for batch ``batch_index``:
    its initial rate times :func:`linear_decay`; the engine calls it before each training batch. Returns the
    factor."""
    factor = linear_decay(batch_index, max_batches, model.config.decay_fraction)
    names = optimizers if model.decayed_optimizers is None else model.decayed_optimizers
    for name in names:
        for group in optimizers[name].param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
    return factor


class GenerativeModel(nn.Module):
    """Base of all registered models."""

    name: ClassVar[str]
    family: ClassVar[str]  # "likelihood" | "latent" | "adversarial" | "translation"
    Config: ClassVar[type] = TrainConfig
    input_kind: ClassVar[InputKind] = "unit"
    default_data: ClassVar[str] = "mnist"  # what `genzoo train MODEL` uses without --data
    precision: ClassVar[str] = "32-true"  # Lightning precision used unless the user asks otherwise (measured choice)
    # batches `genzoo train` runs when given neither --max-steps nor --max-epochs: the budget the model was measured
    # at (benchmarks/README.md); None: DEFAULT_EPOCHS epochs
    default_batches: ClassVar[int | None] = None
    # the optimizers whose rates follow ``config.decay_fraction`` (None: all of them)
    decayed_optimizers: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, config: Any, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.image_shape = tuple(image_shape)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every ``log_prob`` a model defines checks its input first (:meth:`check_input`): the model boundary
        where a user's tensor arrives, and where a wrong one would otherwise give a raw torch error or, worse, a
        finite number for pixels a binary model cannot have."""
        super().__init_subclass__(**kwargs)
        if "log_prob" in cls.__dict__:
            cls.log_prob = _checking_input(cls.__dict__["log_prob"])

    def check_input(self, x: Any) -> Tensor:
        """``x`` as [B, C, H, W] if it is a batch of this model's images (also given flattened, [B, C*H*W]), else a
        one-line :class:`GenzooError`: on the parameters' device; for binary models also a floating dtype and only 0s
        and 1s, given in the parameters' dtype (exact for 0 and 1; Lightning's 64-true and bf16-true train the
        parameters in that dtype but hand over float32 batches). The value check is one pass over the batch,
        well under 2% of a training step (tests/test_faults.py)."""
        if not isinstance(x, Tensor):
            raise GenzooError(f"{self.name} takes a tensor of images, got {type(x).__name__}")
        if tuple(x.shape[1:]) not in (self.image_shape, (self.dims,)):
            shape = ", ".join(map(str, self.image_shape))
            raise GenzooError(f"{self.name} takes images [B, {shape}], got a tensor of shape {list(x.shape)}")
        x = x.view(len(x), *self.image_shape) if x.dim() == 2 else x
        parameter = next(self.parameters(), None)
        if parameter is None:
            return x
        if x.device != parameter.device:
            raise GenzooError(f"{self.name} is on {parameter.device}, the images on {x.device}")
        if self.input_kind != "binary":
            return x
        if not x.is_floating_point():
            raise GenzooError(f"{self.name} takes floating-point images of 0s and 1s, got {x.dtype}")
        if not bool(((x == 0) | (x == 1)).all()):
            bad = x[(x != 0) & (x != 1)][0].item()
            raise GenzooError(f"{self.name} models binary images: every pixel must be 0 or 1, got {bad}")
        return x.to(parameter.dtype)

    @property
    def dims(self) -> int:
        return math.prod(self.image_shape)

    def _lay_out_parameters(self) -> None:
        """Parameters in the NHWC layout when a convolutional model's config asks for ``channels_last`` (call it
        at the end of ``__init__``); oneDNN's CPU convolutions skip their layout reorders there."""
        if getattr(self.config, "channels_last", False):
            self.to(memory_format=torch.channels_last)

    def _layout(self, images: Tensor) -> Tensor:
        """Images in the NHWC layout when a convolutional model's config asks for ``channels_last``."""
        if getattr(self.config, "channels_last", False):
            return images.contiguous(memory_format=torch.channels_last)
        return images

    @classmethod
    def settings_for_data(cls, dataset: Any, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings a run on ``dataset`` (an :class:`genzoo.data.ImageDataset`) trains with: ``settings`` with
        what the model reads off the data filled in (the translation models' attribute names), checked against it.
        Called before the model is built; the result is what the run's config stores. Default: unchanged."""
        return settings

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), self.config.lr)}

    def training_only_modules(self) -> tuple[str, ...]:
        """Names of the submodules (and buffers) that only training uses, such as a GAN's critic: the zoo ships
        the rest, and ``sample`` / ``evaluate`` / ``figures`` must not read them (tested with them set to NaN)."""
        return ()

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """Metrics on a prepared test set ``x`` (the model's ``input_kind``); ``data`` names the dataset (sample
        metrics use it to pick the dataset's feature network)."""
        raise NotImplementedError

    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """Extra images for the run directory, ``{filename: images in the model's data range}``, made from 64
        prepared test images ``x`` (e.g. reconstructions): [N, C, H, W] for a square grid, or [rows, columns, C,
        H, W] for a grid of that layout; none by default."""
        return {}

    def sample(self, n: int) -> Tensor:
        """``n`` samples [n, C, H, W] in the model's data range; models may take keyword options (conditions)."""
        raise NotImplementedError


def _checking_input(log_prob: Callable[..., Tensor]) -> Callable[..., Tensor]:
    @functools.wraps(log_prob)
    def checked(self: GenerativeModel, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return log_prob(self, self.check_input(x), *args, **kwargs)

    return checked


class LikelihoodModel(GenerativeModel):
    """An explicit model: ``log_prob(x)`` is the exact log-likelihood in nats, shape [B]."""

    family = "likelihood"

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        nll = -self.log_prob(batch["x"]).mean()
        step.optimize(nll)
        return {"nll": nll.detach()}

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None, batch_size: int = 500
    ) -> dict[str, Any]:
        from genzoo.metrics.likelihood import nll_metrics

        return nll_metrics(self.log_prob, x, self.input_kind, levels, batch_size)


class AutoregressiveModel(LikelihoodModel):
    """A chain-rule model over pixels in raster order.

    ``conditionals(x)`` returns the parameters of every p(x_d | x_<d), dimension d on axis 1; it is what the
    causality tests differentiate.
    """

    def conditionals(self, x: Tensor) -> Tensor:
        raise NotImplementedError
