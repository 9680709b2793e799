"""Sphinx configuration for the ELEKTRONN documentation (built with warnings as errors in CI).

``sphinx-build -W -b html docs docs/_build/html``: every warning fails the build, and with
``nitpicky`` so does every cross-reference (``:func:``, ``:class:``, ``:mod:``, ``:doc:``, ``:ref:``,
...) that names nothing documented here. Only references into other projects are exempt
(``nitpick_ignore_regex``): there is no intersphinx, the build needs no network.
"""
import builtins
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, '_ext'))

from elektronn import __version__  # noqa: E402

project = 'ELEKTRONN'
author = 'ELEKTRONN developers'
copyright = '2014-2026, ELEKTRONN developers (originally Marius Killinger and Gregor Urban, MPI for Medical Research)'
version = release = __version__

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.viewcode', 'sphinx.ext.mathjax',
              'elektronn_docs']
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [('Shapes', 'notes_style'), ('Example', 'example')]
autodoc_member_order = 'bysource'
# No autodoc_default_options: Sphinx 9.0 lets a default {'members': True} override an explicit
# ':members: A, B' (and treats 'show-inheritance': False as set), so every directive says what it shows.
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path = []

# Broken internal references fail the build. The API reference (api/) is the one place where each
# object is documented (indexed); the topic pages show some of them again with :no-index:.
nitpicky = True
_EXTERNAL = ('numpy', 'np', 'torch', 'scipy', 'h5py', 'zarr', 'numcodecs', 'dask', 'distributed', 'skimage',
             'matplotlib', 'tensorboard', 'pynvml', 'ome_zarr_models', 'pytest')
_STDLIB = ('logging', 'warnings', 'argparse', 'multiprocessing', 'threading', 'concurrent', 'pathlib', 'os',
           'io', 'collections', 'typing', 'contextlib', 'signal', 'pickle', 'json', 'subprocess', 'queue',
           'dataclasses', 'enum', 'abc', 'types', 'functools', 'itertools', 'tempfile', 'shutil', 'sys',
           'time', 'random', 'readline', 'code', 'csv', 'gzip', 'hashlib', 'urllib', 'socket', 'errno')
nitpick_ignore_regex = [
    (r'py:.*', r'(%s)(\..+)?' % '|'.join(_EXTERNAL + _STDLIB)),
    (r'py:.*', r'(%s)' % '|'.join(n for n in dir(builtins) if not n.startswith('_'))),
]
