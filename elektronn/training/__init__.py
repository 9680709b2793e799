"""The config-driven training pipeline: data classes, augmentation, trainer, console.

``from elektronn.training import CNNData`` gives the image data class (the module of the same
name, :mod:`elektronn.training.CNNData`, stays importable as in the original).
"""
from elektronn.training.CNNData import CNNData

__all__ = ['CNNData']
