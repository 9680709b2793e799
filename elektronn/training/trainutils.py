"""``elektronn.training.trainutils``: the original's module path, kept for old scripts.

Where its functions live now:

* files and helpers (:mod:`elektronn.utils`): ``h5Save``, ``h5Load``, ``pickleSave``,
  ``pickleLoad`` (restricted to arrays and plain containers), ``timeit``, ``import_variable_from_file``;
* plots (:mod:`elektronn.training.plotting`): ``plotInfo``, ``saveHist``, ``plotInfoFromFiles``,
  ``previewDiffPlot``;
* devices (:mod:`elektronn.net.device`): ``initGPU``, ``get_free_gpu``;
* config (:mod:`elektronn.training.config`): ``xyz2zyx`` (there ``xyz2zxy``, which is what it does);
* command line (:mod:`elektronn.cli.train`): ``parseargs``;
* console (:mod:`elektronn.training.console`): ``pprintmenu``, ``userInput`` (replaced by the
  ``Console`` class: raises ``NotImplementedError``).
"""
from elektronn.cli.train import parseargs
from elektronn.net.device import get_free_gpu, initGPU
from elektronn.training.config import xyz2zxy as xyz2zyx
from elektronn.training.console import pprintmenu, userInput
from elektronn.training.plotting import plotInfo, plotInfoFromFiles, previewDiffPlot, saveHist
from elektronn.utils import h5Load, h5Save, import_variable_from_file, pickleLoad, pickleSave, timeit

__all__ = ['h5Save', 'h5Load', 'pickleSave', 'pickleLoad', 'timeit', 'import_variable_from_file', 'plotInfo',
           'saveHist', 'plotInfoFromFiles', 'previewDiffPlot', 'xyz2zyx', 'initGPU', 'get_free_gpu', 'parseargs',
           'pprintmenu', 'userInput']
