"""Sphinx configuration for the ELEKTRONN documentation (built with warnings as errors in CI)."""
import os
import sys

sys.path.insert(0, os.path.abspath('..'))

from elektronn import __version__  # noqa: E402

project = 'ELEKTRONN'
author = 'ELEKTRONN developers'
copyright = '2014-2026, ELEKTRONN developers (originally Marius Killinger and Gregor Urban, MPI for Medical Research)'
version = release = __version__

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.viewcode', 'sphinx.ext.mathjax']
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [('Shapes', 'notes_style'), ('Example', 'example')]
autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True, 'show-inheritance': False}
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path = []
nitpicky = False
