"""``elektronn.training.CNNData``: the original's module path, kept for old scripts.

``from elektronn.training import CNNData; CNNData.CNNData(...)`` and
``from elektronn.training.CNNData import CNNData`` work as in ELEKTRONN 1.x. The code lives in
these modules now:

* :mod:`elektronn.training.image_data`: the class ``CNNData`` (reading raw and label cubes,
  registering the labels in their raw cube, ``n_lab`` detection, the cubes and their priorities),
  with the checks of label values in :mod:`elektronn.training.label_checks`;
* :mod:`elektronn.training.patch_sampling`: the batches (``getbatch``, which ``CNNData`` inherits
  from ``PatchSampler``: cutting, warping, flipping and grey-value augmentation of patches, strided
  labels, example weights) and ``plotTrainingTarget``.
"""
from elektronn.training.image_data import CNNData
from elektronn.training.patch_sampling import plotTrainingTarget

__all__ = ['CNNData', 'plotTrainingTarget']
