"""Sphinx helpers of the ELEKTRONN documentation (loaded by ``docs/conf.py``).

* ``.. elektronn-command:: elektronn.cli.segment`` documents a command-line program from its
  argument parser: ``.. program::``, the usage line and the description, one ``.. option::`` per
  argument (so ``:option:`elektronn-segment --min-size``` links to it) and the epilog. Nothing is
  copied by hand, so the page cannot drift from ``--help``.
* ``.. elektronn-aliases:: elektronn.net.convlayer2d`` lists the names a module kept at the
  original's import path re-exports, each linked to where it is defined and documented.
* Napoleon reads the first line of the documentation of data, attributes and properties as
  ``type: description``; in this package such a line is prose ("The pooling modes: ..."), so their
  docstrings pass napoleon unchanged.
* Cross-references to a name at a path that re-exports it (``elektronn.segmentation.Segmenter``,
  ``:func:`watershed_boundaries``` in the package docstring of :mod:`elektronn.segmentation`, a mixin
  method that the API pages show on ``MixedConvNN``) resolve to the one place where the API pages
  document the object: the documented name that imports to the very same object. A reference that
  names no object stays broken and fails the (nitpicky) build.
"""
import argparse
import contextlib
import importlib
import os

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

_MISSING = object()


class CommandDirective(SphinxDirective):
    """``.. elektronn-command:: MODULE``: the program whose parser ``MODULE._parser()`` builds."""

    required_arguments = 1
    has_content = False

    def run(self):
        with _columns(100):   # the width of the usage lines, whatever the terminal of the build
            return self._run()

    def _run(self):
        module = importlib.import_module(self.arguments[0])
        parser = module._parser()
        prog = parser.prog
        formatter = parser._get_formatter()
        lines = ['.. program:: %s' % prog, '', '::', '']
        lines += [('    ' + line).rstrip() for line in parser.format_usage().rstrip().splitlines()]
        lines.append('')
        if parser.description:
            lines += [_escape(parser.description), '']
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            invocation = formatter._format_action_invocation(action)
            lines += ['.. option:: %s' % invocation, '']
            help_text = formatter._expand_help(action) if action.help else ''
            lines += ['   ' + _escape(help_text) if help_text else '   (no description)', '']
        if parser.epilog:
            lines += ['::', '']
            lines += [('    ' + line).rstrip() for line in parser.epilog.rstrip().splitlines()]
            lines.append('')
        node = nodes.Element()
        self.state.nested_parse(StringList(lines, source='<%s --help>' % prog), self.content_offset, node)
        return node.children


class AliasesDirective(SphinxDirective):
    """``.. elektronn-aliases:: MODULE``: a list of ``MODULE``'s names, each linked to its home."""

    required_arguments = 1
    has_content = False

    def run(self):
        name = self.arguments[0]
        module = importlib.import_module(name)
        lines = []
        for public in getattr(module, '__all__', ()):
            obj = getattr(module, public)
            home = '%s.%s' % (obj.__module__, obj.__qualname__)
            lines.append('* ``%s.%s``: :py:obj:`%s`' % (name, public, home))
        node = nodes.Element()
        self.state.nested_parse(StringList(lines, source='<aliases of %s>' % name), self.content_offset, node)
        return node.children


@contextlib.contextmanager
def _columns(width):
    saved = os.environ.get('COLUMNS')
    os.environ['COLUMNS'] = str(width)
    try:
        yield
    finally:
        if saved is None:
            del os.environ['COLUMNS']
        else:
            os.environ['COLUMNS'] = saved


def _escape(text):
    """Plain text as reST: every markup character escaped."""
    return ''.join('\\' + c if c in '\\*`|_[]<>:-\'"' else c for c in ' '.join(text.split()))


def _import(dotted):
    """The object at an import path such as ``elektronn.segmentation.watershed_boundaries``."""
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return getattr(obj, '__func__', obj)
    return _MISSING


class _Resolver:
    def __init__(self):
        self.cache = {}
        self.by_last = None

    def lookup(self, name):
        if name not in self.cache:
            try:
                self.cache[name] = _import(name) if name.startswith('elektronn') else _MISSING
            except Exception:   # a module that cannot be imported here: no alias
                self.cache[name] = _MISSING
        return self.cache[name]

    def __call__(self, app, env, node, contnode):
        if node.get('refdomain') != 'py':
            return None
        target = node['reftarget'].lstrip('.~')
        modname, classname = node.get('py:module'), node.get('py:class')
        candidates = [target]
        if modname:
            candidates.insert(0, '%s.%s' % (modname, target))
            if classname:
                candidates.insert(0, '%s.%s.%s' % (modname, classname, target))
        domain = env.get_domain('py')
        if self.by_last is None:   # all objects are known by now (references resolve after reading)
            self.by_last = {}
            for name in domain.objects:
                self.by_last.setdefault(name.rsplit('.', 1)[-1], []).append(name)
        for candidate in candidates:
            obj = self.lookup(candidate)
            if obj is _MISSING:
                continue
            for name in self.by_last.get(candidate.rsplit('.', 1)[-1], ()):
                if name != candidate and self.lookup(name) is obj and not domain.objects[name].aliased:
                    return domain.resolve_xref(env, node['refdoc'], app.builder, node['reftype'], name, node,
                                               contnode)
        return None


_PLAIN_KINDS = ('data', 'attribute', 'property')


def _before_napoleon(app, what, name, obj, options, lines):
    if what in _PLAIN_KINDS:
        app._elektronn_plain[id(lines)] = list(lines)


def _after_napoleon(app, what, name, obj, options, lines):
    saved = app._elektronn_plain.pop(id(lines), None)
    if saved is not None:
        lines[:] = saved


def _reset(app, env, *args):
    app._elektronn_resolver.by_last = None


def setup(app):
    app.add_directive('elektronn-command', CommandDirective)
    app.add_directive('elektronn-aliases', AliasesDirective)
    app._elektronn_resolver = _Resolver()
    app.connect('missing-reference', app._elektronn_resolver)
    app.connect('env-updated', _reset)
    app._elektronn_plain = {}
    app.connect('autodoc-process-docstring', _before_napoleon, priority=100)   # napoleon: 500
    app.connect('autodoc-process-docstring', _after_napoleon, priority=900)
    return {'version': '1', 'parallel_read_safe': True, 'parallel_write_safe': True}
