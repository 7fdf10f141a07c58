"""Where :func:`inn_mobile.train.finetune.fit` gets its batches: in-memory tensors or any re-iterable of
``(x, y)`` batches (a ``DataLoader`` over an image folder), with an order that a resumed run can replay.

Resuming mid-epoch needs the epoch's order again without having stored it: each epoch's order is a
function of ``(seed, epoch)`` only. In-memory tensors are permuted by a generator seeded from both; a
``DataLoader`` gets its sampler's ``set_epoch`` called (``DistributedSampler``) or, for a shuffling
``RandomSampler``, a generator seeded from both; any other iterable must iterate in the same order
every time. A resumed epoch skips the batches already trained on (a ``DataLoader`` loads them to skip
them: cheap next to training on them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler

from inn_mobile.train.distributed import World

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s order (distinct per epoch and per run seed)."""
    return seed * 1_000_003 + epoch


class TensorBatches:
    """``(x, y)`` tensors served as shuffled batches of ``batch`` (a last incomplete batch is dropped).

    With several processes every rank draws the same *global* batch and keeps its contiguous
    ``batch / world.size`` share, so N processes see exactly the examples one process would.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, seed: int, world: World) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        if len(y) < batch:
            raise ValueError(f"{len(y)} training examples are fewer than one batch of {batch}")
        if batch % world.size:
            raise ValueError(f"batch {batch} must be a multiple of the number of processes ({world.size})")
        self.x, self.y, self.batch, self.seed, self.world = x, y, batch, seed, world

    def __len__(self) -> int:
        return len(self.y) // self.batch

    def indices(self, epoch: int, skip: int) -> Iterator[torch.Tensor]:
        """The global batches' example indices for ``epoch``, from batch ``skip`` on."""
        perm = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)))
        for k in range(skip, len(self)):
            yield perm[k * self.batch:(k + 1) * self.batch]

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch (all of it with one process)."""
        share = len(t) // self.world.size
        return t[self.world.rank * share:(self.world.rank + 1) * share]


def loader_batches(data: Iterable, seed: int, epoch: int, skip: int) -> Iterator[Batch]:
    """One epoch of a user's iterable of batches, in the order that ``(seed, epoch)`` fixes, from ``skip`` on."""
    sampler = getattr(data, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif isinstance(data, DataLoader):
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        data.generator = g  # also seeds the workers' random transforms
        if isinstance(sampler, RandomSampler):
            sampler.generator = g
    for item in itertools.islice(iter(data), skip, None):
        yield split_batch(item)


def split_batch(item) -> Batch:
    """``(x, y)`` from a batch given as a tuple/list (extra fields ignored) or a dict with image/label keys."""
    if isinstance(item, dict):
        keys = [k for k in ("x", "image", "images", "input", "pixel_values") if k in item]
        labels = [k for k in ("y", "label", "labels", "target") if k in item]
        if keys and labels:
            return item[keys[0]], item[labels[0]]
    elif isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise TypeError(f"a training batch must be (x, y) (or a dict with image and label keys), got {type(item)}")


def take_images(data: Iterable | torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` images of ``data``: a tensor of images, or an iterable of batches (labels ignored,
    a batch may also be a bare image tensor)."""
    if isinstance(data, torch.Tensor):
        return data[:n]
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data) \
            and data[1].ndim == 1 and len(data[0]) == len(data[1]):
        return data[0][:n]  # an (x, y) pair of tensors
    got, count = [], 0
    for item in data:
        x = item if isinstance(item, torch.Tensor) else split_batch(item)[0]
        got.append(x[:n - count])
        count += len(got[-1])
        if count >= n:
            break
    if not got:
        raise ValueError("no images in the calibration data")
    return torch.cat(got)
