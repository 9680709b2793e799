"""The original's module paths and names (ELEKTRONN 1.0.14, inventory section 1) and the helpers behind them.

The first test imports every public name of the inventory from its original module path and checks
what kind of object it is. The others test what the re-exported names do: Gabor filters, h5/pickle
files, previewDiffPlot, the console's Python 2 print statement, ``get_value``/``set_value`` on
layer parameters, the debug gradient function, BackgroundProc, createNetfromParams, the pooling
and optimiser entry points and the introspection plots.
"""
import contextlib
import gzip
import importlib
import inspect
import io
import math
import os
import pickle
import types

import numpy as np
import pytest
import torch
from scipy.signal import convolve, convolve2d

#: (module, name) -> reason, for names not yet available (none at present)
_XFAIL = {}

# (original module path, name, kind) for every public name of the inventory (section 1, plus the
# methods named in sections 2 and 5); ``Class.method`` names a method.
_F, _C, _M = 'function', 'class', 'method'
ORIGINAL_NAMES = [
    ('elektronn.utils', 'pprinttime', _F),
    ('elektronn.net.convnet', 'MixedConvNN', _C),
] + [('elektronn.net.convnet', 'MixedConvNN.' + m, _M) for m in (
    'addPerceptronLayer', 'addConvLayer', 'addRecurrentLayer', 'addTiedAutoencoderChain', 'compileOutputFunctions',
    'trainingStep', 'setOptimizerParams', 'setSGDLR', 'setSGDMomentum', 'setWeightDecay', 'setDropoutRates',
    'getDropoutRates', 'resetMomenta', 'randomizeWeights', 'compileDebugFunctions', 'get_activities',
    'get_nonpooled_activities', 'gradstats', 'actstats', 'paramstats', 'predictDense', 'saveParameters',
    'loadParameters', 'get_error', 'get_loss', 'class_probabilities', 'prediction', 'malis_stats')] + [
    ('elektronn.net.convlayer2d', 'ConvLayer2d', _C),
    ('elektronn.net.convlayer2d', 'ConvLayer2d.gaborInitialisation', _M),
    ('elektronn.net.convlayer3d', 'ConvLayer3d', _C),
    ('elektronn.net.convlayer3d', 'AffinityLayer3d', _C),
    ('elektronn.net.convlayer3d', 'MalisLayer', _C),
    ('elektronn.net.perceptronlayer', 'PerceptronLayer', _C),
    ('elektronn.net.perceptronlayer', 'RecurrentLayer', _C),
    ('elektronn.net.pooling', 'pooling2d', _F),
    ('elektronn.net.pooling', 'pooling3d', _F),
    ('elektronn.net.pooling', 'maxout', _F),
    ('elektronn.net.pooling', 'maxabs', _F),
    ('elektronn.net.pooling', 'my_max_pool_3d', _F),
    ('elektronn.net.optimizer', 'Optimizer', _C),
    ('elektronn.net.optimizer', 'compileSGD', _C),
    ('elektronn.net.optimizer', 'compileAdam', _C),
    ('elektronn.net.optimizer', 'compileRPROP', _C),
    ('elektronn.net.optimizer', 'compileCG', _C),
    ('elektronn.net.optimizer', 'compileLBFGS', _C),
    ('elektronn.net.netutils', 'CNNCalculator', _F),
    ('elektronn.net.netutils', 'initWeights', _F),
    ('elektronn.net.netcreation', 'createNet', _F),
    ('elektronn.net.netcreation', 'createNetfromParams', _F),
    ('elektronn.net.introspection', 'plotFilters', _F),
    ('elektronn.net.introspection', 'showActivations', _F),
    ('elektronn.net.introspection', 'showParamHistogram', _F),
    ('elektronn.net.introspection', 'showActivityHistogram', _F),
    ('elektronn.net.introspection', 'embedMatricesInGray', _F),
    ('elektronn.net.introspection', 'showMultipleFiguresAdd', _F),
    ('elektronn.net.gaborfilters', 'makeGabor', _F),
    ('elektronn.net.gaborfilters', 'makeGaborFilters', _F),
    ('elektronn.net.gaborfilters', 'blob', _F),
    ('elektronn.training.config', 'MasterConfig', _C),
    ('elektronn.training.config', 'DefaultConfig', _C),
    ('elektronn.training.config', 'default_config', 'instance:DefaultConfig'),
    ('elektronn.training.config', 'Config', _C),
    ('elektronn.training.trainer', 'Trainer', _C),
] + [('elektronn.training.trainer', 'Trainer.' + m, _M) for m in (
    'loadData', 'createNet', 'debugGetCNNBatch', 'run', 'testModel', 'reset', 'previewSlice', 'predictAndWrite',
    'previewSliceFromTrainData', 'malisPreviewSlice')] + [
    ('elektronn.training.trainutils', n, _F) for n in (
        'h5Save', 'h5Load', 'pickleSave', 'pickleLoad', 'timeit', 'import_variable_from_file', 'plotInfo',
        'saveHist', 'plotInfoFromFiles', 'previewDiffPlot', 'xyz2zyx', 'initGPU', 'get_free_gpu', 'parseargs',
        'pprintmenu', 'userInput')] + [
    ('elektronn.training', 'CNNData', 'module'),
    ('elektronn.training.CNNData', 'CNNData', _C),
    ('elektronn.training.CNNData', 'CNNData.addDataFromFile', _M),
    ('elektronn.training.CNNData', 'CNNData.addDataFromNdarray', _M),
    ('elektronn.training.CNNData', 'CNNData.getbatch', _M),
    ('elektronn.training.CNNData', 'plotTrainingTarget', _F),
] + [('elektronn.training.traindata', n, _C) for n in (
    'Data', 'BalancedData', 'QueueData', 'AdultData', 'MNISTData', 'BuzzData', 'PianoData', 'GeneData')] + [
    ('elektronn.training.traindata', 'Data.' + m, _M) for m in (
        'getbatch', 'createSplitPerm', 'createCVSplit', 'splitData', 'makeExampleSubset', 'makeFeatureSubset')] + [
    ('elektronn.training.warping', 'warp2dJoint', _F),
    ('elektronn.training.warping', 'warp3dJoint', _F),
    ('elektronn.training.warping', 'getWarpParams', _F),
    ('elektronn.training.warping', 'getRequiredPatchSize', _F),
    ('elektronn.training._warping', 'warp2dFast', _F),
    ('elektronn.training._warping', 'warp3dFast', _F),
    ('elektronn.training.parallelisation', 'BackgroundProc', _C),
    ('elektronn.training.parallelisation', 'SharedMem', _C),
    ('elektronn.training.parallelisation', 'Proc', _C),
    ('elektronn.training.parallelisation', 'SharedQ', _C),
    ('elektronn.training.predictor', 'create_predncnn', _F),
]

_SHIMS = ['elektronn.net.convlayer2d', 'elektronn.net.convlayer3d', 'elektronn.net.perceptronlayer',
          'elektronn.net.optimizer', 'elektronn.net.netcreation', 'elektronn.net.gaborfilters',
          'elektronn.training.trainutils', 'elektronn.training.parallelisation', 'elektronn.training._warping',
          'elektronn.training.CNNData']


def _param(module, name, kind):
    reason = _XFAIL.get((module, name))
    marks = [pytest.mark.xfail(reason=reason)] if reason else []
    return pytest.param(module, name, kind, id='%s:%s' % (module, name), marks=marks)


@pytest.mark.parametrize('module, name, kind', [_param(*entry) for entry in ORIGINAL_NAMES])
def test_original_name_imports(module, name, kind):
    if '.' in name:  # a method of a class
        owner, attr = name.split('.')
        obj = getattr(getattr(importlib.import_module(module), owner), attr)
    else:
        namespace = {}
        exec('from %s import %s' % (module, name), namespace)  # exactly as the old scripts do it
        obj = namespace[name]
    if kind == 'class':
        assert inspect.isclass(obj)
    elif kind in ('function', 'method'):
        assert inspect.isfunction(obj), obj
    elif kind == 'module':
        assert inspect.ismodule(obj), obj
    else:
        cls = kind.split(':')[1]
        assert type(obj).__name__ == cls


@pytest.mark.parametrize('module', _SHIMS)
def test_shims_document_and_export(module):
    mod = importlib.import_module(module)
    assert 'original' in mod.__doc__ and 'now' in mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        # a re-export: the object is defined elsewhere
        assert getattr(obj, '__module__', module) != module, name


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _net(input_size, depth, layers, target='nll', batch_size=None):
    from elektronn.net.convnet import MixedConvNN
    with _quiet():
        cnn = MixedConvNN(input_size, input_depth=depth, batch_size=batch_size)
        for kind, args, kwargs in layers:
            getattr(cnn, kind)(*args, **kwargs)
        cnn.compileOutputFunctions(target)
    return cnn


# ---------------------------------------------------------------------------------------------------
# Gabor filters
# ---------------------------------------------------------------------------------------------------
def _gabor_reference(angle, n_modes, size, offset):
    """Pixel by pixel: Gaussian envelope (sigma 0.35) times a cosine along the rotated grid axis."""
    m = size // 2
    coords = np.linspace(-m, m, size) / (m + 1.0)
    t, phase = math.radians(angle), math.radians(offset)
    g = np.empty((size, size))
    for r in range(size):
        for c in range(size):
            x, y = coords[c], coords[r]
            u = x * math.cos(t) + y * math.sin(t)
            v = -x * math.sin(t) + y * math.cos(t)
            g[r, c] = math.exp(-(u * u + v * v) / (2 * 0.35 ** 2)) * math.cos(
                2 * math.pi * (n_modes * 1.6 / math.pi * v + phase))
    g -= g.mean()
    return g / (g ** 2).sum()


def test_gabor_filters():
    from elektronn.net.gaborfilters import blob, makeGabor, makeGaborFilters
    for args in ((0, 1, 5, 45), (30, 2, 4, 0), (135, 1, 7, 10), (359.5, 3, 6, 90)):
        g = makeGabor(*args)
        assert g.shape == (args[2], args[2]) and g.dtype == np.float32
        np.testing.assert_allclose(g, _gabor_reference(*args), rtol=1e-5, atol=1e-6)
        assert abs(g.mean()) < 1e-6
    with pytest.raises(ValueError, match='filter_angle'):
        makeGabor(360, 1, 5, 0)
    bank = makeGaborFilters(5, 3)
    assert bank.shape == (6, 5, 5)
    for k in range(3):
        np.testing.assert_array_equal(bank[k], makeGabor(k * 120.0, 1, 5, 45))
        np.testing.assert_array_equal(bank[3 + k], makeGabor(k * 60.0, 2, 5, 0))
    b = blob(5)
    x = np.linspace(-2, 2, 5)
    ref = np.exp(-0.5 * (x[None] ** 2 + x[:, None] ** 2))
    np.testing.assert_allclose(b, ref / (ref ** 2).sum())
    assert b.shape == (5, 5) and b.argmax() == 12


def test_gabor_initialisation_of_a_2d_layer():
    from elektronn.net.gaborfilters import blob, makeGaborFilters
    cnn = _net((12, 12), 3, [('addConvLayer', (7, 5), dict(pool_shape=1)),
                             ('addConvLayer', (2, 1, 1, 'linear'), dict(is_last_layer=True))])
    cnn.layers[0].gaborInitialisation()
    W = cnn.layers[0].W.get_value()
    assert W.shape == (7, 3, 5, 5)
    for c in range(3):
        np.testing.assert_allclose(W[:6, c], makeGaborFilters(5, 3) / 10, rtol=1e-6)
        np.testing.assert_allclose(W[6, c], blob(5), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Files: h5Save/h5Load, pickleSave/pickleLoad, timeit, import_variable_from_file
# ---------------------------------------------------------------------------------------------------
def test_h5_round_trip(tmp_path):
    from elektronn.training.trainutils import h5Load, h5Save
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    b = np.random.rand(5).astype(np.float32)
    f = str(tmp_path / 'one.h5')
    h5Save(a, f, 'lab')
    out = h5Load(f, 'lab')
    assert out.dtype == np.int16 and np.array_equal(out, a)
    np.testing.assert_array_equal(h5Load(f), a)  # all datasets: the only one
    h5Save(a, f)
    np.testing.assert_array_equal(h5Load(f, 'data'), a)
    f2 = str(tmp_path / 'two.h5')
    h5Save([a, b], f2, keys=['raw', 'lab'], compress=False)
    lab, raw = h5Load(f2, ['lab', 'raw'])
    np.testing.assert_array_equal(lab, b)
    np.testing.assert_array_equal(raw, a)
    h5Save((a, b), f2)
    assert [x.shape for x in h5Load(f2)] == [a.shape, b.shape]  # data0, data1
    with pytest.raises(ValueError, match='keys'):
        h5Save([a, b], f2, keys=['only_one'])
    with pytest.raises(KeyError, match='nothing'):
        h5Load(f2, 'nothing')


def test_pickle_round_trip(tmp_path):
    from elektronn.training.trainutils import pickleLoad, pickleSave
    a = np.random.rand(3, 4).astype(np.float32)
    records = [a, {'x': np.arange(3), 'name': 'abc', 'n': 3}, (1, 2.5, None), 'text', np.int16(7)]
    f = str(tmp_path / 'several.pkl')
    pickleSave(records, f)
    out = pickleLoad(f)
    assert len(out) == 5
    np.testing.assert_array_equal(out[0], a)
    assert out[0].dtype == np.float32
    np.testing.assert_array_equal(out[1]['x'], np.arange(3))
    assert out[1]['name'] == 'abc' and out[2] == (1, 2.5, None) and out[3] == 'text' and out[4] == 7
    pickleSave(a, f)  # a single object is one record
    np.testing.assert_array_equal(pickleLoad(f), a)
    gz = str(tmp_path / 'data.pkl.gz')
    with gzip.open(gz, 'wb') as g:
        pickle.dump((a, np.arange(4)), g, protocol=2)
        pickle.dump([1, 2], g, protocol=pickle.HIGHEST_PROTOCOL)
    (d, l), second = pickleLoad(gz)
    np.testing.assert_array_equal(d, a)
    assert list(l) == [0, 1, 2, 3] and second == [1, 2]


_CALLS = []


def _side_effect(*args):
    _CALLS.append(args)


class _Payload:
    def __reduce__(self):
        return _side_effect, ('loading ran code',)


class _Plain:
    pass


def test_pickle_load_refuses_other_objects(tmp_path):
    from elektronn.safe_pickle import RefusedGlobal
    from elektronn.training.trainutils import pickleLoad
    for i, obj in enumerate([_Payload(), [np.zeros(2), _Plain()], types.SimpleNamespace(a=1)]):
        f = str(tmp_path / ('bad%i.pkl' % i))
        with open(f, 'wb') as fh:
            pickle.dump(np.zeros(3), fh, protocol=2)
            pickle.dump(obj, fh, protocol=2)
        with pytest.raises(pickle.UnpicklingError, match='refused') as info:
            pickleLoad(f)
        assert isinstance(info.value, RefusedGlobal) and 'bad%i.pkl' % i in str(info.value)
    assert _CALLS == []


def test_timeit_and_import_variable_from_file(tmp_path, capsys):
    from elektronn.training.trainutils import import_variable_from_file, timeit
    calls = []

    def work(x):
        calls.append(x)
        return x * 2

    assert timeit(work, n=3)(4) == 8 and calls == [4, 4, 4]
    out = capsys.readouterr().out
    assert 'Function <work> took' in out and 'averaged over 3 execs' in out
    (tmp_path / 'helper_mod_x.py').write_text('VALUE = 41\n')
    (tmp_path / 'my_data.py').write_text('from helper_mod_x import VALUE\n\nclass MyData:\n    v = VALUE + 1\n')
    cls = import_variable_from_file(str(tmp_path / 'my_data.py'), 'MyData')
    assert cls.v == 42
    with pytest.raises(AttributeError, match='Nothing'):
        import_variable_from_file(str(tmp_path / 'my_data.py'), 'Nothing')


# ---------------------------------------------------------------------------------------------------
# previewDiffPlot, plotInfo, parseargs, xyz2zyx, userInput
# ---------------------------------------------------------------------------------------------------
def test_preview_diff_plot_writes_png(tmp_path):
    from matplotlib.image import imread, imsave
    from elektronn.training.trainutils import previewDiffPlot
    rng = np.random.default_rng(0)
    base = rng.random((20, 24))
    for name, img in (('runA', base), ('runB', np.clip(base + 0.3 * (rng.random((20, 24)) > 0.8), 0, 1)),
                      ('runC', base[1:-1, 2:-2])):
        os.makedirs(tmp_path / name)
        imsave(str(tmp_path / name / ('%s-pred-0-c1-z0-1.0hrs.png' % name)), img, cmap='gray', vmin=0, vmax=1)
    pairs = previewDiffPlot(['runA', 'runB', 'runC'], root_dir=str(tmp_path), block_name=0, c=1, z=0, number=1)
    assert [(a, b) for a, b, _ in pairs] == [('runA', 'runB'), ('runA', 'runC'), ('runB', 'runC')]
    ab = pairs[0][2]
    assert ab.shape == (20, 24, 3)
    same = np.isclose(ab[..., 1], ab[..., 2], atol=1e-2)
    np.testing.assert_allclose(ab[same][:, 0], ab[same][:, 1], atol=1e-2)  # agreement is grey
    assert pairs[1][2].shape == (18, 20, 3)  # centre-cropped to the smaller preview
    for path in ('runA_vs_runB_pred-0-c1-z0-1hrs.png', 'Compare_pred-0-c1-z0-1hrs.png'):
        img = imread(str(tmp_path / path))
        assert img.ndim == 3 and img.shape[0] > 10
    with pytest.raises(FileNotFoundError, match='runX'):
        previewDiffPlot(['runA', 'runX'], root_dir=str(tmp_path), save=False)


def test_plot_info_takes_the_original_positional_autoscale(tmp_path, monkeypatch):
    from elektronn.training.trainutils import plotInfo
    monkeypatch.chdir(tmp_path)
    timeline = [[i, 60.0 * i, 0.7, 0.6, 0.5] for i in range(40)]
    history = [[i, 60.0 * i, 0.7, 0.6, 0.5, 0.55, -0.01, 0.01] for i in range(0, 40, 10)]
    errors = [[i, 60.0 * i, 20.0, 25.0] for i in range(0, 40, 10)]
    plotInfo(timeline, history, [], errors, 'run', False)  # the original: (..., save_name, autoscale)
    assert os.path.exists('run.history.png') and os.path.exists('Backup/run.errors.npy')


def test_parseargs_xyz2zyx_user_input():
    from elektronn.training import trainutils
    assert trainutils.parseargs(False, ['c.py', '--gpu=auto']) == ('c.py', 'auto')
    assert trainutils.parseargs(False, ['c.py']) == ('c.py', False)
    assert trainutils.parseargs(None, ['c.py', '--gpu', '1']) == ('c.py', 1)
    assert trainutils.xyz2zyx([[4, 5, 1], 3]) == [[1, 4, 5], 3]
    with pytest.raises(NotImplementedError, match='Console'):
        trainutils.userInput(None, [100])


# ---------------------------------------------------------------------------------------------------
# The console's Python 2 print statement
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('line, expected', [
    ("print self.testModel('test')", "print(self.testModel('test'))"),
    ('print', 'print()'),
    ('print a, b', 'print(a, b)'),
    ('print >>f, x', 'print(x, file=f)'),
    ('print(a)', 'print(a)'),
    ('print = 3', 'print = 3'),
    ('x = "print 1"', 'x = "print 1"'),
    ('printer 1', 'printer 1'),
    ('print foo bar', 'print foo bar'),  # not Python either way: left for the error message
])
def test_py2_print_rewrite(line, expected):
    from elektronn.training.console import py2_print
    assert py2_print(line) == expected


def test_console_runs_the_documented_print_statement(capsys):
    from elektronn.training.console import Console
    trainer = types.SimpleNamespace(cnn=None, config=None)
    con = Console(trainer, input_func=lambda prompt: 'q')
    me = types.SimpleNamespace(testModel=lambda source: (0.25, 1.5) if source == 'test' else None)
    ns = {'self': me, 'data': types.SimpleNamespace(warp_on=True)}
    con.execute("print self.testModel('test')", ns)
    assert capsys.readouterr().out == '(0.25, 1.5)\n'
    con.execute('print', ns)
    assert capsys.readouterr().out == '\n'
    con.execute('print data.warp_on, "x"', ns)
    assert capsys.readouterr().out == 'True x\n'
    con.execute("print('unchanged')", ns)
    assert capsys.readouterr().out == 'unchanged\n'
    con.execute('s = "print 1"', ns)
    assert ns['s'] == 'print 1'


# ---------------------------------------------------------------------------------------------------
# get_value / set_value on layer parameters
# ---------------------------------------------------------------------------------------------------
def test_conv2d_set_value_is_the_original_true_convolution():
    cnn = _net((10, 9), 2, [('addConvLayer', (3, (3, 2)), dict(pool_shape=1, activation_func='linear')),
                            ('addConvLayer', (2, 1, 1, 'linear'), dict(is_last_layer=True))])
    layer = cnn.layers[0]
    assert [p is q for p, q in zip(layer.params, (layer.W, layer.b))] == [True, True]
    W = np.random.randn(3, 2, 3, 2).astype(np.float32)
    b = np.array([0.1, -0.2, 0.3], np.float32)
    layer.W.set_value(W)
    layer.b.set_value(b)
    np.testing.assert_array_equal(layer.W.get_value(), W)
    np.testing.assert_array_equal(layer.b.get_value(), b)
    x = np.random.rand(2, 2, 10, 9).astype(np.float32)
    out = cnn.get_activities(x)[0]
    for n in range(2):
        for f in range(3):
            ref = sum(convolve2d(x[n, c], W[f, c], mode='valid') for c in range(2)) + b[f]
            np.testing.assert_allclose(out[n, f], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r'\(3, 2, 3, 2\)'):
        layer.W.set_value(np.zeros((3, 2, 2, 3)))


def test_conv3d_and_following_perceptron_use_the_original_layouts():
    cnn = _net((4, 7, 6), 2, [('addConvLayer', (3, (2, 3, 3)), dict(pool_shape=1, activation_func='linear')),
                              ('addPerceptronLayer', (5, 'linear'), {})])
    conv, perc = cnn.layers
    W = np.random.randn(3, 2, 2, 3, 3).astype(np.float32)  # (nof, fz, ch, fx, fy)
    conv.W.set_value(W)
    conv.b.set_value(np.zeros(3, np.float32))
    assert conv.W.get_value().shape == (3, 2, 2, 3, 3) and conv.W.original_shape == (3, 2, 2, 3, 3)
    x = np.random.rand(1, 4, 2, 7, 6).astype(np.float32)  # (bs, z, ch, x, y)
    act = cnn.get_activities(x)[0][0]  # (z, nof, x, y)
    ref = np.stack([sum(convolve(x[0, :, c], W[f, :, c], mode='valid') for c in range(2)) for f in range(3)], 1)
    np.testing.assert_allclose(act, ref, rtol=1e-4, atol=1e-5)
    # the perceptron's rows follow the original's (z, ch, x, y) flattening
    assert [p is q for p, q in zip(perc.params, (perc.b, perc.W))] == [True, True]
    Wp = np.random.randn(act.size, 5).astype(np.float32)
    perc.W.set_value(Wp)
    perc.b.set_value(np.ones(5, np.float32))
    np.testing.assert_array_equal(perc.W.get_value(), Wp)
    out = cnn.get_activities(x)[1][0]
    np.testing.assert_allclose(out, act.reshape(-1) @ Wp + 1, rtol=1e-4, atol=1e-3)


def test_perceptron_and_rnn_values_and_dropout_rate():
    import copy
    cnn = _net((6,), None, [('addPerceptronLayer', (4, 'tanh'), {}), ('addPerceptronLayer', (3, 'linear'), {})])
    layer = cnn.layers[0]
    W = np.random.randn(6, 4).astype(np.float32)
    layer.W.set_value(W)
    layer.b.set_value(np.zeros(4, np.float32))
    x = np.random.rand(5, 6).astype(np.float32)
    np.testing.assert_allclose(cnn.get_activities(x)[0], np.tanh(x @ W), rtol=1e-5, atol=1e-6)
    copy_ = layer.W.get_value()
    copy_[:] = 0  # get_value returns a copy
    np.testing.assert_array_equal(layer.W.get_value(), W)
    assert all(hasattr(p, 'get_value') for p in cnn.params)
    twin = copy.deepcopy(layer.W)
    assert np.array_equal(twin.get_value(), W) and np.array_equal(pickle.loads(pickle.dumps(layer.W)).get_value(), W)
    assert not hasattr(layer, 'activation_noise')
    from elektronn.net.convnet import MixedConvNN
    with _quiet():
        rnn = MixedConvNN(3, input_depth=4, recurrent=True)
        r = rnn.addRecurrentLayer(n_hid=5)
    assert [p.shape for p in r.params] == [(3, 5), (5, 5), (5,), (5,)]
    r.hid_0.set_value(np.ones(5))
    np.testing.assert_array_equal(r.hid_0.get_value(), np.ones(5, np.float32))
    with _quiet():
        drop = MixedConvNN(6, enable_dropout=True)
        d = drop.addPerceptronLayer(4)
    assert d.activation_noise.get_value() == np.float32(0.5)
    d.activation_noise.set_value(np.float32(0.2))
    assert d.dropout_rate == pytest.approx(0.2)


def test_debug_functions_and_gradient_function():
    cnn = _net((8, 8), 1, [('addConvLayer', (3, 3), dict(pool_shape=2, activation_func='tanh')),
                           ('addConvLayer', (2, 1, 1, 'linear'), dict(is_last_layer=True))])
    cnn.compileDebugFunctions()
    x = np.random.rand(2, 1, 8, 8).astype(np.float32)
    y = np.random.randint(0, 2, (2, 3, 3)).astype(np.int16)
    assert [f(x).shape for f in cnn.debug_functions] == [(2, 3, 3, 3), (2, 2, 3, 3)]
    assert [f(x).shape for f in cnn.debug_conv_output] == [(2, 3, 6, 6), (2, 2, 3, 3)]
    grads = cnn.debug_gradients_function(x, y)
    assert [g.shape for g in grads] == [p.get_value().shape for p in cnn.params]
    # central differences on one filter entry, in the original's layout
    W = cnn.layers[0].W
    k = list(cnn.params).index(W)
    w0 = W.get_value()
    h = 1e-2
    losses = []
    for sign in (1, -1):
        w = w0.copy()
        w[1, 0, 0, 2] += sign * h
        W.set_value(w)
        losses.append(float(cnn.get_loss(x, y)[0]))
    W.set_value(w0)
    assert grads[k][1, 0, 0, 2] == pytest.approx((losses[0] - losses[1]) / (2 * h), rel=0.05, abs=1e-4)


# ---------------------------------------------------------------------------------------------------
# createNetfromParams
# ---------------------------------------------------------------------------------------------------
def test_create_net_from_params_rebuilds_the_net(tmp_path):
    from elektronn.net.netcreation import createNetfromParams
    cnn = _net((21, 21), 2, [('addConvLayer', (4, 4), dict(pool_shape=2, activation_func='tanh')),
                             ('addConvLayer', (5, 3), dict(pool_shape=1, activation_func='tanh')),
                             ('addConvLayer', (3, 1, 1, 'tanh'), dict(is_last_layer=True))])
    f = str(tmp_path / 'net.param')
    with _quiet():
        cnn.saveParameters(f)
        rebuilt = createNetfromParams(f, (21, 21), batch_size=None, activation_func='tanh')
    x = np.random.rand(2, 2, 21, 21).astype(np.float32)
    np.testing.assert_allclose(rebuilt.class_probabilities(x), cnn.class_probabilities(x), rtol=1e-5, atol=1e-6)
    assert rebuilt.n_lab == 3 and rebuilt.dimension_calc.input == [21, 21]
    # another input size (snapped to a valid one) and prediction only
    with _quiet():
        big = createNetfromParams(f, (33, 33), only_prediction=True)
    assert big.patch_size.tolist() == [33, 33]
    xb = np.random.rand(1, 2, 33, 33).astype(np.float32)
    np.testing.assert_allclose(big.class_probabilities(xb)[..., :7, :7],
                               cnn.class_probabilities(xb[..., :21, :21]), rtol=1e-5, atol=1e-6)
    mlp = _net((6,), None, [('addPerceptronLayer', (3, 'linear'), {})])
    g = str(tmp_path / 'mlp.param')
    with _quiet():
        mlp.saveParameters(g)
    with pytest.raises(ValueError, match='conv-only'):
        createNetfromParams(g, 10)


# ---------------------------------------------------------------------------------------------------
# BackgroundProc
# ---------------------------------------------------------------------------------------------------
class _Batches:
    def __init__(self):
        self.rng = np.random.default_rng(0)

    def getbatch(self, batch_size, scale=1.0):
        d = self.rng.random((batch_size, 1, 4, 4)) * scale
        return d, (d[:, 0, 0, 0] > 0.5 * scale).astype(np.int64)


def test_background_proc_produces_batches():
    from elektronn.training.parallelisation import BackgroundProc, SharedMem
    from elektronn.training.workers import WorkerError
    data = _Batches()
    bg = BackgroundProc(data.getbatch, dtypes=[np.float32, np.int16], shapes=[(3, 1, 4, 4), (3,)], n_proc=2,
                        target_args=(3,), target_kwargs={'scale': 2.0})
    try:
        assert len(bg.procs) == 2
        batches = [bg.get() for _ in range(6)]
    finally:
        bg.shutdown()
    for d, l in batches:
        assert d.shape == (3, 1, 4, 4) and d.dtype == np.float32 and l.shape == (3,) and l.dtype == np.int16
        assert 0 <= d.min() and d.max() <= 2.0
    firsts = {float(d[0, 0, 0, 0]) for d, _ in batches}
    assert len(firsts) == 6  # the workers are seeded independently: no repeated batches
    assert not any(p.is_alive() for p in bg.procs)

    def fails():
        raise RuntimeError('broken target')

    with BackgroundProc(fails, n_proc=1) as bad:
        with pytest.raises(WorkerError, match='broken target'):
            bad.get()
    with pytest.raises(NotImplementedError, match='BackgroundProc'):
        SharedMem()


# ---------------------------------------------------------------------------------------------------
# Pooling and optimiser entry points, introspection
# ---------------------------------------------------------------------------------------------------
def test_pooling_functions():
    from elektronn.net.pooling import maxabs, maxout, my_max_pool_3d, pooling2d, pooling3d
    x = np.random.randn(2, 3, 6, 4).astype(np.float32)
    ref = x.reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(pooling2d(x, (2, 2)), ref)
    absref = x.reshape(2, 3, 3, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 3, 2, 4)
    pick = np.take_along_axis(absref, np.abs(absref).argmax(-1)[..., None], -1)[..., 0]
    np.testing.assert_array_equal(pooling2d(x, (2, 2), 'maxabs'), pick)
    v = np.random.randn(1, 4, 3, 6, 2).astype(np.float32)  # (bs, z, ch, x, y)
    out = pooling3d(v, (2, 3, 1))
    assert out.shape == (1, 2, 3, 2, 2)
    np.testing.assert_array_equal(out[0, 1, 2, 1, 1], v[0, 2:4, 2, 3:6, 1].max())
    np.testing.assert_array_equal(my_max_pool_3d(v, (2, 3, 1)), out)
    t = torch.from_numpy(x)
    assert isinstance(pooling2d(t), torch.Tensor)
    np.testing.assert_array_equal(maxout(x, 3), x.max(axis=1, keepdims=True))
    np.testing.assert_array_equal(maxabs(np.array([1., -3, 2]), np.array([-2., 1, 2])), [-2., -3, 2])


def test_compile_optimizer_entry_points():
    from elektronn.net.optimizer import Optimizer, compileAdam, compileCG, compileSGD
    cnn = _net((5,), None, [('addPerceptronLayer', (3, 'linear'), {})])
    x = np.random.rand(8, 5).astype(np.float32)
    y = np.random.randint(0, 3, 8).astype(np.int16)
    with _quiet():
        sgd = compileSGD({'LR': 0.05, 'momentum': 0.5}, model_obj=cnn)
    assert float(cnn.SGD_LR) == pytest.approx(0.05) and float(cnn.SGD_momentum) == pytest.approx(0.5)
    before = cnn.params[0].get_value()
    with _quiet():
        loss, instance = sgd(x, y)
    assert isinstance(loss, np.float32) and instance.shape == (8,)
    assert not np.array_equal(before, cnn.params[0].get_value())
    assert sgd.get_loss(x, y)[0] < loss
    with _quiet():
        adam = compileAdam({'LR': 0.01}, cnn)
        adam(x, y)
        cg = compileCG({'n_steps': 2}, cnn)
    assert cnn._Adam_params['LR'] == 0.01 and cnn._CG_params['n_steps'] == 2
    with pytest.raises(ValueError, match='max_step'):
        cg.updateOptimizerParams({'max_step': -1})
    grads = sgd.compileGradients()(x, y)
    assert [g.shape for g in grads] == [tuple(p.shape) for p in cnn.params]
    with pytest.raises(NotImplementedError, match='model_obj'):
        Optimizer()
    with pytest.raises(NotImplementedError, match='symbolic'):
        compileSGD({'LR': 0.1, 'momentum': 0.9}, model_obj=cnn, X=object(), Y=object())
    with pytest.raises(NotImplementedError, match='update rule'):
        Optimizer(cnn)(x, y)


def test_introspection_helpers(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    from elektronn.net.introspection import showActivations, showActivityHistogram, showMultipleFiguresAdd
    monkeypatch.chdir(tmp_path)
    cnn = _net((10, 10), 1, [('addConvLayer', (4, 3), dict(pool_shape=2)),
                             ('addConvLayer', (2, 1, 1, 'linear'), dict(is_last_layer=True))])
    x = np.random.rand(2, 1, 10, 10).astype(np.float32)
    with _quiet():
        images = showActivations(cnn, x, show_first_class_prob=True)
    assert len(images) == 2 and images[0].ndim == 2
    assert os.path.exists('activations.png') and os.path.exists('activations_class0.png')
    with _quiet():
        hists = showActivityHistogram(cnn, x)
    assert [h[0] for h in hists] == [1, 2] and sum(hists[0][1]) == 2 * 4 * 4 * 4
    assert os.path.exists('activity_histogram.png')
    fig = Figure()
    axes = [showMultipleFiguresAdd(fig, 5, i, np.eye(3), 't%i' % i) for i in range(5)]
    assert len(fig.axes) == 5 and axes[4].get_title() == 't4'
    cnn3 = _net((4, 8, 8), 1, [('addConvLayer', (3, (2, 3, 3)), dict(pool_shape=1)),
                               ('addConvLayer', (2, 1, 1, 'linear'), dict(is_last_layer=True))])
    with _quiet():
        images3 = showActivations(cnn3, np.random.rand(1, 4, 1, 8, 8).astype(np.float32), savename=None)
    assert images3[0].shape == (3 * 7, 3 * 7)  # one row per z slice, one tile per map
