"""Block-wise work on volumes of any size: the volume prediction of ``elektronn-predict``, on one
process or a Dask cluster.

* :mod:`elektronn.inference.blocks`: block plans and the record of finished blocks;
* :mod:`elektronn.inference.runners`: running any block-wise task here or on ``distributed``
  workers, local clusters and connections to existing schedulers;
* :mod:`elektronn.inference.volume_prediction`: dense prediction of a volume with a network.

Volumes are read and written through :mod:`elektronn.volumes` (HDF5 and Zarr).
"""
