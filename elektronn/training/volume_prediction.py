"""Moved to :mod:`elektronn.inference.volume_prediction` (prediction is not training); kept importable here."""
from elektronn.inference.volume_prediction import *  # noqa: F401,F403
from elektronn.inference.volume_prediction import (_BLOCK_OVERHEAD_BYTES, INFO_ATTR,  # noqa: F401
                                                   InputVolume, estimate_block_bytes, plan_blocks)
