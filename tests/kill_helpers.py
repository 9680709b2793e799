"""A network that kills its own process (SIGKILL) in the middle of one prediction, once: a worker dying
mid-block. Sent to Dask workers by value (the workers need not import the tests)."""
import os
import signal

from elektronn.net.convnet import MixedConvNN


class KillOnceNet(MixedConvNN):
    """Kills the process that runs its ``kill_at``-th ``class_probabilities`` call, the first time only.

    ``marker`` is a file created (exclusively) just before the kill: it says the kill happened and keeps
    every later process from killing itself again.
    """
    marker = None
    kill_at = 3
    _calls = 0

    def class_probabilities(self, data):
        self._calls += 1
        if self._calls >= self.kill_at and self.marker is not None:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().class_probabilities(data)
