"""The API reference (``docs/api/*.rst``) covers every public name of the package, each with a docstring.

"Public" is a module's ``__all__`` where it has one, else the names not starting with ``_`` that the
module defines itself (functions, classes, module-level assignments; not what it imports). Every
public name must

* have a docstring of its own (functions and classes), or a documentation comment ``#: ...`` above
  its assignment or a string literal below it (data), as Sphinx's autodoc reads them; and
* be documented on the API pages: the module where it is *defined* (its home; a name re-exported
  by a package ``__init__`` is documented there, once) is ``automodule``-d there with its members,
  or the name has an ``autoclass``/``autofunction``/... directive of its own.

A module that re-exports names of another with its members shown must exclude them
(``:exclude-members:``), so that nothing is documented twice; the thin modules kept at the
original's import paths (:data:`ALIASES`) are listed on ``docs/api/aliases.rst`` without members.

Everything is read from the source files with :mod:`ast` and from the reST files as text: nothing
is imported and Sphinx is not needed, so the check takes well under a second. The build itself
(``sphinx-build -W -n``) checks that every cross-reference resolves.
"""
import ast
import os
import pkgutil
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(ROOT, 'elektronn')
API_DIR = os.path.join(ROOT, 'docs', 'api')

#: Modules kept at the original's (or an earlier) import path that only re-export names defined
#: elsewhere: listed on docs/api/aliases.rst (``automodule`` with ``:no-members:``, which shows their
#: docstring naming the real home), their names documented once, at home.
ALIASES = {
    'elektronn.net.convlayer2d': 'the original module path of ConvLayer2d (elektronn.net.layers.conv)',
    'elektronn.net.convlayer3d': 'the original module path of ConvLayer3d, AffinityLayer3d, MalisLayer',
    'elektronn.net.perceptronlayer': 'the original module path of PerceptronLayer and RecurrentLayer',
    'elektronn.net.optimizer': 'the original module path of the optimisers (elektronn.net.optimizers)',
    'elektronn.net.netcreation': 'the original module path of createNet (elektronn.training.netcreation)',
    'elektronn.net.gaborfilters': 'the original module path of the Gabor filters (elektronn.net.netutils)',
    'elektronn.training.CNNData': 'the original module path of CNNData (elektronn.training.image_data)',
    'elektronn.training.trainutils': "the original's helper module; its functions live in six modules now",
    'elektronn.training.parallelisation': 'the original module path of BackgroundProc (elektronn.training.background)',
    'elektronn.training._warping': "the original's compiled warp kernels (elektronn.training.warping)",
    'elektronn.training.volume_prediction': 'the earlier path of elektronn.inference.volume_prediction',
}

#: Modules that are not part of the API: private modules other than the aliases above.
PRIVATE = {'elektronn.cli._common': 'argument helpers shared by the commands (a private module)'}

_DOC_OPTIONS = ('members', 'no-members', 'exclude-members', 'no-index', 'noindex', 'inherited-members',
                'undoc-members', 'show-inheritance', 'synopsis', 'platform', 'deprecated', 'member-order',
                'special-members', 'private-members', 'imported-members', 'ignore-module-all')


def _walk(pkg_dir, prefix):
    """(module name, path) of a package and everything below it, without importing anything."""
    yield prefix, os.path.join(pkg_dir, '__init__.py')
    for mod in pkgutil.iter_modules([pkg_dir]):
        path = os.path.join(pkg_dir, mod.name)
        if mod.ispkg:
            yield from _walk(path, prefix + '.' + mod.name)
        else:
            yield prefix + '.' + mod.name, path + '.py'


def _top_level(body):
    """Top-level statements, looking into ``if``/``try`` blocks (conditional definitions)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _top_level(block)
        else:
            yield node


class Module:
    """What the source of one module defines, imports and documents."""

    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.is_package = path.endswith('__init__.py')
        with open(path, encoding='utf-8') as f:
            source = f.read()
        lines = source.splitlines()
        tree = ast.parse(source, path)
        self.docstring = ast.get_docstring(tree)
        self.classes = {}     # class name -> (base expressions, {member: docstring or None})
        self.all = None
        self.defined = {}     # name -> ('function'|'class'|'data', docstring or None)
        self.imported = {}    # local name -> (module, name)
        self.star_imports = []
        body = list(_top_level(tree.body))
        for i, node in enumerate(body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = 'class' if isinstance(node, ast.ClassDef) else 'function'
                self.defined[node.name] = (kind, ast.get_docstring(node))
                if kind == 'class':
                    self.classes[node.name] = (node.bases, self._members(node))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if '__all__' in names:
                    try:
                        self.all = list(ast.literal_eval(node.value))
                    except ValueError:
                        raise AssertionError('%s: __all__ must be a literal list of names' % name)
                    continue
                nxt = body[i + 1] if i + 1 < len(body) else None
                doc = self._attribute_doc(node, nxt, lines)
                for target in names:
                    self.defined.setdefault(target, ('data', doc))
        for node in ast.walk(tree):   # imports anywhere: lazy ones in functions (a package's __getattr__)
            if isinstance(node, ast.ImportFrom):
                module = self._absolute(node)
                for alias in node.names:
                    if alias.name == '*':
                        self.star_imports.append(module)
                    else:
                        self.imported.setdefault(alias.asname or alias.name, (module, alias.name))

    @staticmethod
    def _members(node):
        """Public methods and properties of a class with their docstrings (a property's is its getter's)."""
        members = {}
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(isinstance(d, ast.Attribute) and d.attr in ('setter', 'deleter') for d in item.decorator_list):
                    continue
                if not item.name.startswith('_'):
                    members[item.name] = ast.get_docstring(item)
            elif (isinstance(item, ast.Assign) and isinstance(item.value, ast.Call)
                  and isinstance(item.value.func, ast.Name) and item.value.func.id == 'property'):
                doc = [k.value.value for k in item.value.keywords
                       if k.arg == 'doc' and isinstance(k.value, ast.Constant)]
                for target in item.targets:
                    if isinstance(target, ast.Name) and not target.id.startswith('_'):
                        members[target.id] = doc[0] if doc else None
        return members

    def _absolute(self, node):
        if not node.level:
            return node.module
        parts = self.name.split('.')
        base = parts if self.is_package else parts[:-1]
        base = base[:len(base) - node.level + 1]
        return '.'.join(base + ([node.module] if node.module else []))

    @staticmethod
    def _attribute_doc(node, nxt, lines):
        """The documentation of an assignment as autodoc finds it: ``#:`` comments above it or after
        it on its line, or a string literal right below it."""
        first = node.lineno - 1
        same_line = lines[node.end_lineno - 1] if node.lineno == node.end_lineno else lines[first]
        match = re.search(r'#:\s*(.*)$', same_line)
        if match and match.group(1).strip():
            return match.group(1).strip()
        comment = []
        i = first - 1
        while i >= 0 and re.match(r'^\s*#:', lines[i]):
            comment.insert(0, re.sub(r'^\s*#:\s?', '', lines[i]))
            i -= 1
        if ''.join(comment).strip():
            return '\n'.join(comment)
        if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str) and nxt.value.value.strip()):
            return nxt.value.value
        return None

    def public_names(self):
        if self.all is not None:
            return list(self.all)
        return [n for n in self.defined if not n.startswith('_')]


MODULES = {name: Module(name, path) for name, path in _walk(PACKAGE_DIR, 'elektronn')}


def home_of(module_name, name, seen=()):
    """(home module, name there) of a public name: where it is defined, following re-exports."""
    if (module_name, name) in seen:
        raise AssertionError('import cycle for %s.%s' % (module_name, name))
    seen = seen + ((module_name, name),)
    module = MODULES.get(module_name)
    if module is None:
        return None
    if name in module.defined:
        return module_name, name
    if name in module.imported:
        return home_of(*module.imported[name], seen=seen)
    for star in module.star_imports:
        found = home_of(star, name, seen)
        if found:
            return found
    return None


def inherited_doc(module_name, class_name, member, seen=()):
    """The docstring of ``member`` in the class or its bases defined in elektronn (autodoc shows an
    inherited docstring where a method has none), or None."""
    if (module_name, class_name) in seen or class_name not in MODULES[module_name].classes:
        return None
    bases, members = MODULES[module_name].classes[class_name]
    if members.get(member):
        return members[member]
    for base in bases:
        if isinstance(base, ast.Name):
            home = home_of(module_name, base.id)
            if home:
                doc = inherited_doc(home[0], home[1], member, seen + ((module_name, class_name),))
                if doc:
                    return doc
    return None


class Directive:
    """An ``auto*`` directive on an API page with its options."""

    def __init__(self, page, kind, target, options):
        self.page, self.kind, self.target, self.options = page, kind, target, options

    def members(self):
        """None for all members (``:members:``), else the set of members named (empty without
        ``:members:``: docs/conf.py sets no default options)."""
        if 'no-members' in self.options or 'members' not in self.options:
            return set()
        value = self.options['members'].strip()
        return {m.strip() for m in value.split(',') if m.strip()} if value else None

    def excluded(self):
        return {m.strip() for m in self.options.get('exclude-members', '').split(',') if m.strip()}

    def indexed(self):
        return 'no-index' not in self.options and 'noindex' not in self.options


def _parse_api_pages():
    directives = []
    for page in sorted(os.listdir(API_DIR)):
        if not page.endswith('.rst'):
            continue
        with open(os.path.join(API_DIR, page), encoding='utf-8') as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            match = re.match(r'^\s*\.\. (auto\w+|py:module|py:currentmodule):: *(\S+)\s*$', line)
            if not match:
                continue
            options = {}
            for opt in lines[i + 1:]:
                opt_match = re.match(r'^\s+:([\w-]+):\s*(.*)$', opt)
                if not opt_match:
                    break
                options[opt_match.group(1)] = opt_match.group(2)
            directives.append(Directive(page, match.group(1), match.group(2), options))
    return directives


DIRECTIVES = _parse_api_pages()
AUTOMODULES = {}
for _d in DIRECTIVES:
    if _d.kind == 'automodule':
        AUTOMODULES.setdefault(_d.target, []).append(_d)


def _documented_at_home(home_module, name, explicit_only=False):
    """Why the API pages show ``home_module.name``, or None (autodoc leaves ``__special__`` names to
    directives of their own)."""
    for d in [] if explicit_only else AUTOMODULES.get(home_module, []):
        members = d.members()
        if d.indexed() and name not in d.excluded() and (members is None or name in members):
            return '%s: automodule %s' % (d.page, home_module)
    for d in DIRECTIVES:
        if d.kind not in ('automodule', 'py:module', 'py:currentmodule') and d.indexed():
            if d.target == '%s.%s' % (home_module, name):
                return '%s: %s %s' % (d.page, d.kind, d.target)
    return None


def _api_modules():
    return sorted(n for n in MODULES if n not in ALIASES and n not in PRIVATE)


def test_every_module_is_on_the_api_pages():
    missing = [n for n in _api_modules() if not any(d.indexed() for d in AUTOMODULES.get(n, []))]
    assert not missing, 'modules without an (indexed) automodule directive in docs/api/*.rst: %s' % missing
    for name in _api_modules():
        assert MODULES[name].docstring, '%s has no module docstring' % name


def test_aliases_are_listed_without_members():
    for name, reason in ALIASES.items():
        assert name in MODULES, 'ALIASES names %s, which does not exist (%s)' % (name, reason)
        directives = AUTOMODULES.get(name, [])
        assert directives, '%s (%s) is not listed on docs/api/aliases.rst' % (name, reason)
        for d in directives:
            assert d.page == 'aliases.rst' and d.members() == set(), \
                '%s is an alias: list it on aliases.rst with :no-members: (not %s %s)' % (name, d.page, d.options)
        module = MODULES[name]
        assert module.docstring, '%s: the docstring must name the real home of its names' % name
        for public in module.public_names():
            home = home_of(name, public)
            assert home and home[0] != name, '%s.%s is defined in the alias module itself' % (name, public)


@pytest.mark.parametrize('module_name', _api_modules())
def test_public_names_are_documented(module_name):
    module = MODULES[module_name]
    problems = []
    for name in module.public_names():
        home = home_of(module_name, name)
        if home is None:
            problems.append('%s: not defined in the module nor imported from an elektronn module' % name)
            continue
        home_module, home_name = home
        if home_module in ALIASES:
            problems.append('%s: comes from the alias module %s; import it from its home' % (name, home_module))
            continue
        kind, doc = MODULES[home_module].defined[home_name]
        where = '%s.%s' % (home_module, home_name)
        if not (doc and doc.strip()):
            problems.append('%s (%s %s): no docstring%s' % (name, kind, where, ' (a "#: ..." comment above the '
                                                            'assignment)' if kind == 'data' else ''))
        if kind == 'class' and home_module == module_name:
            for member in MODULES[home_module].classes[home_name][1]:
                if not inherited_doc(home_module, home_name, member):
                    problems.append('%s.%s: a public method or property without a docstring (autodoc leaves '
                                    'it out)' % (where, member))
        home_all = MODULES[home_module].all
        dunder = home_name.startswith('__') and home_name.endswith('__')
        if home_all is not None and home_name not in home_all:
            problems.append('%s: %s is not in __all__ of %s, so autodoc leaves it out' % (name, home_name, home_module))
        elif home_name.startswith('_') and not dunder:
            problems.append('%s: its home name %s is private' % (name, where))
        elif not _documented_at_home(home_module, home_name, explicit_only=dunder):
            problems.append('%s: %s is not documented on the API pages (automodule %s with its members)'
                            % (name, where, home_module))
        if home_module != module_name:
            for d in AUTOMODULES.get(module_name, []):
                members = d.members()
                shown = members is None and name not in d.excluded() or members and name in members
                if d.indexed() and shown:
                    problems.append('%s: re-exported from %s, but %s documents it again (add it to '
                                    ':exclude-members: or use :no-members:)' % (name, home_module, d.page))
    assert not problems, '%s:\n  ' % module_name + '\n  '.join(problems)


def test_api_directives_name_existing_modules():
    for d in DIRECTIVES:
        if d.kind in ('automodule', 'py:module', 'py:currentmodule'):
            assert d.target in MODULES, '%s: %s %s is not a module of elektronn' % (d.page, d.kind, d.target)
        for option in d.options:
            assert option in _DOC_OPTIONS or not d.kind.startswith('auto'), \
                '%s: %s %s has an unknown option :%s:' % (d.page, d.kind, d.target, option)
