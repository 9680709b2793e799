"""Set-up of the worker processes of a local cluster (a Dask preload, see :func:`~elektronn.inference.runners.start_local_cluster`).

The workers share the terminal's process group, so ctrl+c would interrupt them mid-block as well;
they ignore it and leave it to the client, which stops the run and closes the cluster.
"""
import signal


def dask_setup(worker):
    """Called by Dask in each worker process as it starts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
