"""The ``--device`` option of the benchmarks: the CPU, or CUDA GPU 0 for every ELEKTRONN network built after it."""
import contextlib
import io
import sys

import torch

with contextlib.redirect_stdout(io.StringIO()):
    from elektronn.net.device import initGPU


def select_device(name, parser):
    """``torch.device`` for ``--device``; for cuda, every ELEKTRONN network built from now on is placed
    on GPU 0 (``initGPU``, whose line goes to stderr). No GPU: the parser's error (exit status 2)."""
    if name == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        parser.error('--device cuda: PyTorch %s (CUDA %s) sees no CUDA GPU on this machine; run without --device '
                     'or with --device cpu' % (torch.__version__, torch.version.cuda or 'not built in'))
    with contextlib.redirect_stdout(io.StringIO()) as said:
        device = initGPU(0)
    print(said.getvalue().strip(), file=sys.stderr)
    return device
