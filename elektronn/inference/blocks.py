"""Blocks of a volume and the record of the finished ones, for any block-wise work.

A :class:`BlockPlan` cuts an output volume into blocks of one shape (the last ones along an axis
are smaller); blocks are numbered in C order over the block grid. A :class:`BlockLedger` is the
record of finished blocks, stored next to the output (an array ``<key>_done``, one uint8 flag per
block): a block counts as done only once its flag is set, and whoever processes a block sets the
flag only after the block's data is written. Resuming means processing the blocks whose flag is
not set, whichever process, machine or runner wrote the others.

In a Zarr store every flag is a chunk of its own, so that worker processes marking different blocks
never write the same object; in an HDF5 file the flags are one allocated dataset, written by the one
process that writes the output.
"""
import dataclasses
import itertools

import numpy as np

__all__ = ['BlockPlan', 'BlockLedger', 'even_blocks', 'min_blocks_for']


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """The blocks of an output volume.

    Attributes:
        pred_shape: Output shape (any number of axes; the prediction uses ``(z, x, y)``).
        block: Shape of a block (the last ones along an axis may be smaller).
        fov: Field of view, or ``None``; a block of output ``[a, b)`` then reads the input
            ``[a, b + fov - 1)`` (see :meth:`input_stop`).
    """
    pred_shape: tuple
    block: tuple
    fov: tuple = None

    @property
    def grid(self):
        """Blocks per axis."""
        return tuple(-(-p // b) for p, b in zip(self.pred_shape, self.block))

    @property
    def n_blocks(self):
        """The number of blocks."""
        return int(np.prod(self.grid))

    def blocks(self):
        """``(number, start, stop)`` of every block, in C order over the grid."""
        for number, index in enumerate(itertools.product(*[range(g) for g in self.grid])):
            yield (number,) + self.bounds(index)

    def bounds(self, index):
        """``(start, stop)`` of the block at grid position ``index``."""
        start = tuple(i * b for i, b in zip(index, self.block))
        stop = tuple(min(s + b, p) for s, b, p in zip(start, self.block, self.pred_shape))
        return start, stop

    def block_bounds(self, number):
        """``(start, stop)`` of block ``number``."""
        return self.bounds(np.unravel_index(int(number), self.grid))

    def input_stop(self, stop):
        """End of the input region of a block ending at ``stop`` (needs ``fov``)."""
        return tuple(s + f - 1 for s, f in zip(stop, self.fov))

    @staticmethod
    def voxels(start, stop):
        """Number of voxels between ``start`` and ``stop``."""
        return int(np.prod([b - a for a, b in zip(start, stop)]))


def even_blocks(shape, largest):
    """Blocks no larger than ``largest`` that split ``shape`` into as equal parts as possible."""
    return tuple(-(-s // -(-s // b)) for s, b in zip(shape, largest))


def min_blocks_for(client):
    """The fewest blocks a plan for ``client`` should have (where the volume allows).

    Two per worker of the cluster, so that no worker waits while another works on one large block
    (and a worker has its next block at hand); a cluster whose workers are still starting counts as
    one worker. 1 without a client (``None``: this process).
    """
    return 1 if client is None else 2 * max(1, len(client.nthreads()))


class BlockLedger:
    """The record of finished blocks of an output: ``<key>_done`` in the output's container.

    Args:
        volume: The flags, a :class:`~elektronn.volumes.Volume` of shape ``(n_blocks,)``.
    """

    def __init__(self, volume):
        self.volume = volume

    @staticmethod
    def key_for(output_key):
        """The ledger's key next to the output ``output_key``."""
        return output_key.rstrip('/') + '_done'

    @classmethod
    def create(cls, container, output_key, plan, description=None):
        """A new ledger (all blocks to do) for ``plan`` next to ``output_key``."""
        per_block_chunks = container.format == 'zarr'
        vol = container.create_volume(cls.key_for(output_key), (plan.n_blocks,), np.uint8,
                                      chunks=(1,) if per_block_chunks else None, fill_value=0,
                                      allocate=not per_block_chunks)
        vol.set_attrs(description=description or (
            'finished blocks of %s (1 = done), C order over the block grid %s' % (output_key, list(plan.grid))))
        return cls(vol)

    @classmethod
    def open(cls, container, output_key):
        """The existing ledger of ``output_key`` in ``container``."""
        return cls(container.volume(cls.key_for(output_key)))

    @property
    def n_blocks(self):
        """The number of blocks recorded."""
        return self.volume.shape[0]

    def done(self):
        """A bool array: which blocks are finished."""
        return np.asarray(self.volume[:]).astype(bool)

    def mark(self, number):
        """Record block ``number`` as finished (call only once its data is written and flushed)."""
        self.volume[int(number)] = 1
        self.volume.flush()
