"""The config-driven training pipeline: data classes, augmentation, trainer, console.

As in the original, ``from elektronn.training import CNNData`` gives the *module*
:mod:`elektronn.training.CNNData`; the image data class is ``CNNData.CNNData``
(``from elektronn.training.CNNData import CNNData``).
"""

__all__ = []
