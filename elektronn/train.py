"""``python -m elektronn.train <config> [--gpu ...] [--resume]``: the same as ``elektronn-train``."""
import sys

from elektronn.cli.train import main

if __name__ == '__main__':
    sys.exit(main())
