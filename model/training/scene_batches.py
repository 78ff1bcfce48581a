"""The training stream's batches, rendered ahead of the step that needs them by worker processes when asked.

Batch ``i`` is ``EmojiScenes.batch(i, batch_size)``, a pure function of the run's seed and ``i``, so rendering it in
a worker changes nothing the model sees: a run with workers and one without draw the same scenes in the same order,
and a resumed run picks up at its step either way. On the 2-core CPU the model takes both cores and the generator
(well under a millisecond a scene) runs in the training process; on a GPU machine a step of 1,024 images needs some
tens of thousands of scenes a second, which only several cores rendering ahead can give.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader, Dataset

from model.data.dataset import EmojiScenes

PREFETCH_PER_WORKER = 4  # batches each worker keeps ready


class SceneBatches(Dataset):
    """Batch ``index`` of ``data`` as (uint8 images (B, H, W, 3), captions)."""

    def __init__(self, data: EmojiScenes, batch_size: int) -> None:
        self.data = data
        self.batch_size = batch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[str]]:
        images, captions, _ = self.data.batch(index, self.batch_size)
        return torch.from_numpy(images), captions


@contextmanager
def scene_batches(
    data: EmojiScenes, batch_size: int, indices: Iterable[int], workers: int = 0, pin_memory: bool = False
) -> Iterator[Iterator[tuple[torch.Tensor, list[str]]]]:
    """The batches ``indices`` in order: drawn here with ``workers=0``, else by that many processes ahead of use.

    The workers end with the ``with`` block: a run that stops before its last batch (a time limit, a save and
    stop) would otherwise leave them waiting until the interpreter exits, and its teardown waits for them.
    """
    batches = SceneBatches(data, batch_size)
    if workers == 0:
        yield (batches[index] for index in indices)
        return
    loader = DataLoader(
        batches,
        batch_size=None,  # each item is a whole batch of one aspect bucket
        sampler=list(indices),
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_PER_WORKER,
        # The workers' seeds come from their own generator: drawn from the global one, they would shift the run's
        # noise, timesteps and caption dropout.
        generator=torch.Generator(),
    )
    ahead = iter(loader)
    try:
        yield ahead
    finally:
        ahead._shutdown_workers()  # what the iterator's __del__ does, now rather than whenever it is collected
