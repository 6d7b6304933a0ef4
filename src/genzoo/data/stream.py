"""Vectorized in-memory batching with exact resume.

Batch ``t`` of a run is a pure function of ``(seed, t)``: the epoch's permutation and the per-batch randomness
(dynamic binarization, dequantization noise) come from generators seeded by them. Resuming at batch ``t`` is
therefore exact, whatever the data loader prefetched before the process died.

On a GPU the engine moves the uint8 images onto the device once (:meth:`BatchStream.to`): every batch is then
gathered, binarized or dequantized there, with a generator on that device, and no DataLoader worker or host-to-
device copy stands between the data and the model. The device's generator draws other numbers than the CPU's, so a
GPU run's batches differ from a CPU run's with the same seed, and are still a pure function of (seed, t) on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor

from genzoo.data.transforms import InputKind, prepare


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BatchStream:
    """Iterable of ``{"x": prepared, "y": labels}`` batches over uint8 images held in memory.

    ``batch_size`` is per process; under DDP each rank takes its slice of one global batch.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None,
        batch_size: int,
        kind: InputKind,
        levels: int,
        seed: int,
    ) -> None:
        self.images, self.labels = images, labels
        self.device = images.device
        self.batch_size, self.kind, self.levels, self.seed = batch_size, kind, levels, seed
        self.next_batch = 0
        self._order: tuple[int, Tensor] | None = None
        self.position: Callable[[], int] = lambda: self.next_batch

    def _per_epoch(self, world: int) -> int:
        return len(self.images) // (self.batch_size * world)

    def __len__(self) -> int:
        return self._per_epoch(_world()[1])

    def batch(self, index: int) -> dict[str, Tensor]:
        """This process's share of global batch ``index``.

        The global batch and its randomness do not depend on the number of processes, so a DDP run sees exactly
        the data of a one-process run with the same global batch.
        """
        rank, world = _world()
        per_epoch = self._per_epoch(world)
        epoch, within = divmod(index, per_epoch)
        global_size = self.batch_size * world
        chosen = self._epoch_order(epoch)[within * global_size : (within + 1) * global_size].to(self.device)
        generator = torch.Generator(self.device).manual_seed(self.seed * 1_000_003 + index)
        prepared = prepare(self.images[chosen], self.kind, self.levels, generator)
        mine = slice(rank * self.batch_size, (rank + 1) * self.batch_size)
        out = {"x": prepared[mine]}
        if self.labels is not None:
            out["y"] = self.labels[chosen][mine]
        return out

    def to(self, device: torch.device | str) -> BatchStream:
        """Keep the images (and labels) on ``device`` and build every batch there from now on."""
        self.device = torch.device(device)
        self.images = self.images.to(self.device)
        self.labels = None if self.labels is None else self.labels.to(self.device)
        return self

    def _epoch_order(self, epoch: int) -> Tensor:
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.images), generator=generator))
        return self._order[1]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        per_epoch = len(self)
        if per_epoch == 0:
            raise ValueError("batch size larger than the training set")
        end = (self.next_batch // per_epoch + 1) * per_epoch
        while self.next_batch < end:
            index = self.next_batch
            self.next_batch += 1
            yield self.batch(index)

    # Lightning saves these in its checkpoint: ``position`` is bound by the engine to the count of batches
    # actually trained on, which excludes a batch that was prefetched but not used.
    def state_dict(self) -> dict[str, int]:
        return {"next_batch": self.position()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.next_batch = int(state["next_batch"])
