"""The documents generated from the parameter table: the config template and the documentation table.

:func:`render_template` gives ``examples/config_template.py`` (every parameter with its master
default), :func:`render_rst_table` the parameter table of the documentation
(``docs/config_parameters.inc``); :func:`main` is the command line that prints them::

    python -m elektronn.training.config --template > examples/config_template.py
    python -m elektronn.training.config --rst > docs/config_parameters.inc
"""
import argparse
import sys

from elektronn.training.config_schema import MASTER_PARAMS

__all__ = ['render_template', 'render_rst_table', 'main']


def _flag_text(flag):
    return {'*': '(*) ', '$': '($) ', '': ''}[flag]


def _wrap(text, width, prefix):
    words, lines, line = text.split(), [], prefix
    for w in words:
        if len(line) + len(w) + 1 > width and line.strip() != prefix.strip():
            lines.append(line.rstrip())
            line = prefix
        line += w + ' '
    lines.append(line.rstrip())
    return lines


def render_template():
    """The text of ``examples/config_template.py``: every parameter with its master default."""
    out = ['# ELEKTRONN config template: every parameter with its master default.',
           '# GENERATED from elektronn/training/config.py (MASTER_PARAMS); do not edit by hand, regenerate with',
           '#     python -m elektronn.training.config --template > examples/config_template.py',
           '# Copy it as a starting point for a run file, or as ~/.elektronn.config for your own defaults.',
           '# (*) marks important parameters, ($) ones only needed for special cases.',
           '# Shapes are given in (x, y) / (x, y, z) order.']
    section = None
    for p in MASTER_PARAMS:
        if p.section != section:
            section = p.section
            out += ['', '### %s ###' % section]
        out += _wrap(_flag_text(p.flag) + p.doc, 100, '# ')
        out.append('%s = %s' % (p.name, p.template_value if p.template_value is not None else repr(p.default)))
        if p.template_after:
            out.append(p.template_after)
    return '\n'.join(out) + '\n'


def render_rst_table():
    """The parameter table of the documentation (reStructuredText), grouped by section."""
    out = ['.. This file is GENERATED from elektronn/training/config.py (MASTER_PARAMS); regenerate with',
           '   python -m elektronn.training.config --rst > docs/config_parameters.inc', '']
    section = None
    for p in MASTER_PARAMS:
        if p.section != section:
            section = p.section
            out += ['', section, '~' * len(section), '', '.. list-table::', '   :header-rows: 1',
                    '   :widths: 22 30 48', '', '   * - Parameter', '     - Master default', '     - Meaning']
        default = repr(p.default)
        out += ['   * - ``%s``%s' % (p.name, {'*': ' (*)', '$': ' ($)', '': ''}[p.flag]),
                '     - ``%s``' % default,
                '     - %s' % p.doc.replace('*', r'\*')]
    return '\n'.join(out) + '\n'


def main(argv=None):
    """The command line ``python -m elektronn.training.config --template|--rst``: print one of the documents."""
    parser = argparse.ArgumentParser(prog='python -m elektronn.training.config',
                                     description='Print a document generated from the master defaults.')
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--template', action='store_true', help='the config template (examples/config_template.py)')
    group.add_argument('--rst', action='store_true', help='the documentation table (docs/config_parameters.inc)')
    args = parser.parse_args(argv)
    sys.stdout.write(render_template() if args.template else render_rst_table())

