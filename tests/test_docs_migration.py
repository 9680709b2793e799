"""The migration guide for ELEKTRONN 1.x users (docs/migration.rst) against the code and the inventory.

* Every module, script and example of the original appears in the guide, and every module path of the
  original still exists in the package (the guide says they all still import). The list of the
  original's modules is kept here, so that the check runs where the inventory
  (../shared/reference/original-inventory.md) is absent, as in CI's clone; where the inventory is
  present, the list here must cover its module layout.
* Every ``elektronn-*`` program the guide shows is a console script of setup.py, every
  ``python -m`` module and every :mod: target it names exists, and the console commands it lists are
  the console's.

Nothing here imports the package (PyTorch takes seconds to import): files are read and parsed.
"""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, 'docs', 'migration.rst')
INVENTORY = os.path.join(ROOT, '..', 'shared', 'reference', 'original-inventory.md')

#: Every module of ELEKTRONN 1.0.14 (inventory section 1): ``__init__.py`` is the package itself,
#: ``_warping`` was a compiled Cython extension.
ORIGINAL_MODULES = [
    'elektronn',
    'elektronn.utils',
    'elektronn.net.convnet',
    'elektronn.net.convlayer2d',
    'elektronn.net.convlayer3d',
    'elektronn.net.perceptronlayer',
    'elektronn.net.pooling',
    'elektronn.net.optimizer',
    'elektronn.net.netutils',
    'elektronn.net.netcreation',
    'elektronn.net.introspection',
    'elektronn.net.gaborfilters',
    'elektronn.training.config',
    'elektronn.training.trainer',
    'elektronn.training.trainutils',
    'elektronn.training.CNNData',
    'elektronn.training.traindata',
    'elektronn.training.warping',
    'elektronn.training._warping',
    'elektronn.training.parallelisation',
    'elektronn.training.predictor',
]

#: The original's programs (``elektronn-train-dev.py`` was not installed) and example files.
ORIGINAL_SCRIPTS = ['elektronn-train', 'elektronn-profile', 'elektronn-train-dev.py']
ORIGINAL_EXAMPLES = ['config_template.py', 'neuro_3d_config.py', 'MNIST_CNN_warp_config.py', 'MNIST_MLP_config.py',
                     'MNIST_CNN_standalone.py', 'MNIST_CNN_standalone_Dropout.py', 'MNIST_Denoising_Autoencoder.py']
#: Files of the original that were not Python modules: the C kernels behind ``_warping``.
ORIGINAL_OTHER_FILES = ['_warping.pyx', 'warping.c']


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


@pytest.fixture(scope='module')
def guide():
    return _read(GUIDE)


def _literals(text):
    """The contents of the ``inline literals`` of reST ``text``."""
    return re.findall(r'``(.+?)``', text, re.S)


# ---------------------------------------------------------------------------------------------------
# The inventory's module layout
# ---------------------------------------------------------------------------------------------------
def parse_inventory_layout(text):
    """``(modules, scripts, examples, other files)`` of the package tree in section 1 of the inventory.

    The tree is a fenced block under the heading "## 1."; it starts at the line ``elektronn/``,
    nests by two spaces (``net/``, ``training/``, ``scripts/``, ``examples/``) and ends at the
    next line without indentation. Wrapped descriptions are indented further and start with no
    file name, so they are skipped.
    """
    section = re.search(r'^## 1\..*?^```\n(.*?)^```', text, re.M | re.S)
    if section is None:
        raise ValueError('no package layout block in section 1 of the inventory')
    modules, scripts, examples, others = [], [], [], []
    folder = None
    in_tree = False
    for line in section.group(1).splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(' '))
        entry = line.strip()
        if indent == 0:
            in_tree = entry.startswith('elektronn/')
            continue
        if not in_tree:
            continue
        if indent == 2 and re.match(r'^[\w-]+/', entry):
            folder = entry.split('/')[0]
            continue
        if indent == 2:
            folder = None
        if indent > 4:
            continue  # a wrapped description
        if folder == 'scripts':
            scripts.append(entry.split()[0])
        elif folder == 'examples':
            examples.extend(re.findall(r'([\w-]+\.py)\b', entry))
        else:
            name = entry.split()[0]
            stem, ext = os.path.splitext(name)
            package = 'elektronn' + ('.' + folder if folder else '')
            if ext in ('.py', '.pyx'):
                modules.append(package if stem == '__init__' else package + '.' + stem)
            if ext in ('.pyx', '.c'):
                others.append(name)
    return modules, scripts, examples, others


_SAMPLE_LAYOUT = """\
## 1. Package and module layout

```
elektronn/
  __init__.py            9   sets the recursion limit
  utils.py              17   pprinttime(t)
  net/                       -- the core
    convnet.py        1401   MixedConvNN: model container
    introspection.py   231   plotFilters, showActivations,
                             embedMatricesInGray, showMultipleFiguresAdd
  training/                  -- the pipeline
    _warping.pyx       240   Cython wrappers
    warping.c          150   C kernels
  scripts/
    elektronn-train     38   main CLI (installed)
    elektronn-train-dev.py 48 developer variant
  examples/
    config_template.py 203   template
    MNIST_CNN_standalone.py 43, MNIST_Denoising_Autoencoder.py 84
doc/  (Sphinx): index.py
setup.py, requirements.txt
```
"""


def test_inventory_parser_reads_a_layout_block():
    modules, scripts, examples, others = parse_inventory_layout(_SAMPLE_LAYOUT)
    assert modules == ['elektronn', 'elektronn.utils', 'elektronn.net.convnet', 'elektronn.net.introspection',
                       'elektronn.training._warping']
    assert scripts == ['elektronn-train', 'elektronn-train-dev.py']
    assert examples == ['config_template.py', 'MNIST_CNN_standalone.py', 'MNIST_Denoising_Autoencoder.py']
    assert others == ['_warping.pyx', 'warping.c']


def test_the_explicit_lists_cover_the_inventory(guide):
    if not os.path.isfile(INVENTORY):
        pytest.skip('the inventory %s is not here (it is outside the repository)' % INVENTORY)
    modules, scripts, examples, others = parse_inventory_layout(_read(INVENTORY))
    assert len(modules) >= 15  # the parser found the tree, not a fragment of it
    literals = _literals(guide)
    assert [m for m in modules if m not in literals] == []
    assert sorted(set(modules) - set(ORIGINAL_MODULES)) == []
    assert sorted(set(scripts) - set(ORIGINAL_SCRIPTS)) == []
    assert sorted(set(examples) - set(ORIGINAL_EXAMPLES)) == []
    assert sorted(set(others) - set(ORIGINAL_OTHER_FILES)) == []


# ---------------------------------------------------------------------------------------------------
# The guide names every module of the original, and those paths still exist
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('module', ORIGINAL_MODULES)
def test_guide_names_every_original_module(guide, module):
    assert module in _literals(guide), '``%s`` is missing from docs/migration.rst' % module


@pytest.mark.parametrize('module', ORIGINAL_MODULES)
def test_every_original_module_path_still_exists(module):
    # the guide says every original path still imports; test_original_imports.py imports them
    path = os.path.join(ROOT, *module.split('.'))
    assert os.path.isfile(path + '.py') or os.path.isfile(os.path.join(path, '__init__.py')), module


def test_guide_names_the_original_scripts_examples_and_extension_files(guide):
    literals = ' '.join(_literals(guide))
    for name in ORIGINAL_SCRIPTS + ORIGINAL_EXAMPLES + ORIGINAL_OTHER_FILES:
        assert re.search(r'(?<![\w-])%s(?![\w-])' % re.escape(name), literals), name


# ---------------------------------------------------------------------------------------------------
# Programs, modules and console commands shown in the guide exist
# ---------------------------------------------------------------------------------------------------
def console_scripts():
    """``{name: 'module:function'}`` of the console scripts in setup.py (read, not run)."""
    text = _read(os.path.join(ROOT, 'setup.py'))
    return dict(re.findall(r"'(elektronn-[\w-]+)\s*=\s*([\w.]+:\w+)'", text))


def _module_file(module):
    path = os.path.join(ROOT, *module.split('.'))
    for candidate in (path + '.py', os.path.join(path, '__init__.py')):
        if os.path.isfile(candidate):
            return candidate
    return None


def test_every_program_in_the_guide_is_a_console_script(guide):
    scripts = console_scripts()
    assert 'elektronn-train' in scripts and 'elektronn-convert-params' in scripts
    for module_function in scripts.values():
        module, function = module_function.split(':')
        source = _module_file(module)
        assert source is not None, module_function
        assert re.search(r'^def %s\(' % function, _read(source), re.M), module_function
    # the original's programs that no longer exist are named only as such
    gone = {'elektronn-train-dev'}
    shown = set(re.findall(r'(?<![\w/-])(elektronn(?:-[a-z]+)+)(?![\w.-])', guide)) - gone
    assert 'elektronn-train' in shown and 'elektronn-convert-params' in shown
    assert sorted(shown - set(scripts)) == []


def test_python_m_modules_and_mod_targets_exist(guide):
    for module in re.findall(r'python -m ([\w.]+)', guide):
        assert _module_file(module) is not None, module
    targets = re.findall(r':mod:`~?([\w.]+)`', guide)
    assert len(targets) > 20
    for module in targets:
        assert _module_file(module) is not None, module


def test_console_commands_in_the_guide_are_the_consoles(guide):
    tree = ast.parse(_read(os.path.join(ROOT, 'elektronn', 'training', 'console.py')))
    commands = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, 'id', None) == 'COMMANDS' for t in node.targets))
    section = guide.split('The console in Python 3', 1)[1].split('\nWhere each module went', 1)[0]
    # the rows of the section's first table, between its top and bottom border lines (=====  =====)
    table = re.search(r'^=+ +=+\n(.*?)^=+ +=+$', section, re.M | re.S).group(1)
    first_column = set()
    for row in table.splitlines():
        for literal in _literals(row.split('  ')[0]):
            first_column.add(literal.split()[0])
    assert sorted(first_column - set(commands)) == []  # no command the console lacks
    named = {literal.split()[0] for literal in _literals(table)}
    assert sorted(set(commands) - named) == []  # and every command it has
