"""elektronn-evaluate: tables, JSON and PNG from HDF5 files and Zarr stores, and every input error path."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from elektronn.cli.evaluate import main
from elektronn.evaluation import boundary_prf, evaluate, gt_segmentation_from_boundaries, segmentation_scores
from elektronn.volumes import open_container

SHAPE = (4, 24, 20)
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def make_volumes():
    """A gt of 4 blocks separated by membrane (label 0), a seg with one planted split and merge, a
    membrane map, 2-class float and 1-class uint8 probabilities and raw data."""
    rng = np.random.default_rng(0)
    gt = np.zeros(SHAPE, np.uint32)
    gt[:, :11, :9], gt[:, :11, 10:], gt[:, 12:, :9], gt[:, 12:, 10:] = 1, 2, 3, 4
    seg = (gt + 10).astype(np.uint64)
    seg[:, :5, :9] = 50  # split of gt object 1
    seg[(gt == 3) | (gt == 4)] = 60  # merge of gt objects 3 and 4
    membrane = (gt == 0).astype(np.uint8)
    prob = np.clip(membrane * 0.6 + rng.random(SHAPE) * 0.5, 0, 1).astype(np.float32)
    return dict(seg=seg, gt=gt, membrane=membrane, prob2=np.stack([1 - prob, prob]),
                prob8=np.round(prob * 255).astype(np.uint8), raw=rng.integers(0, 256, SHAPE).astype(np.uint8),
                fseg=seg.astype(np.float32), small_gt=gt[:, :, :10], membrane255=membrane * 255)


@pytest.fixture
def data(tmp_path):
    arrays = make_volumes()
    path = tmp_path / 'vol.h5'
    with h5py.File(path, 'w') as f:
        for key, value in arrays.items():
            f[key] = value
    return str(path), arrays


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_table_and_json_from_hdf5(data, capsys, tmp_path):
    h5, arrays = data
    out_json = tmp_path / 'scores.json'
    rc, out, err = run(capsys, h5 + ':seg', h5 + ':gt', '--json', out_json)
    assert rc == 0, err
    expected = segmentation_scores(arrays['seg'], arrays['gt'])
    assert 'Rand error (1 - V_rand)' in out and '%.4f' % expected['rand_error'] in out
    assert 'VOI merge H(gt|seg) [bits]' in out and '%.4f' % expected['voi_merge'] in out
    assert 'worst split 1' in out and 'gt object 1 ' in out and 'worst merge 1' in out and 'segment 60 ' in out
    record = json.loads(out_json.read_text())
    assert record['inputs'] == dict(seg=h5 + ':seg', gt=h5 + ':gt', gt_boundary=False, boundary=None, channel=None,
                                    two_d=False)
    assert record['segmentation'] == pytest.approx(expected)
    assert record['worst_errors']['splits'][0]['label'] == 1
    assert record['worst_errors']['merges'][0]['label'] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scores.json', 'vol.h5']  # no temporary file left


def test_gt_boundary_2d_with_probabilities_and_png(data, capsys, tmp_path):
    h5, arrays = data
    out_json, out_png = tmp_path / 'r.json', tmp_path / 'errors.png'
    rc, out, err = run(capsys, h5 + ':seg', h5 + ':membrane', '--gt-boundary', '--2d', '--boundary', h5 + ':prob2',
                       '--json', out_json, '--png', out_png, '--raw', h5 + ':raw')
    assert rc == 0, err
    gt = gt_segmentation_from_boundaries(arrays['membrane'], two_d=True)
    expected = evaluate(arrays['seg'], gt, boundary=arrays['prob2'][1], gt_boundary=arrays['membrane'], two_d=True)
    record = json.loads(out_json.read_text())
    assert record['inputs']['channel'] == 1 and record['inputs']['gt_boundary'] is True
    assert record['mode'] == '2d' and len(record['segmentation']['sections']) == SHAPE[0]
    assert record['segmentation']['voi'] == pytest.approx(expected['segmentation']['voi'])
    assert record['boundary'] == pytest.approx(expected['boundary'])
    assert record['boundary_best']['f1'] == pytest.approx(expected['boundary_best']['f1'])
    assert 'boundary f1 @0.5' in out and 'boundary best threshold' in out
    assert out_png.read_bytes()[:8] == PNG_MAGIC and out_png.stat().st_size > 5000


def test_uint8_probabilities_are_divided_by_255(data, capsys, tmp_path):
    h5, arrays = data
    out_json = tmp_path / 'r.json'
    rc, _, err = run(capsys, h5 + ':seg', h5 + ':membrane', '--gt-boundary', '--boundary', h5 + ':prob8',
                     '--json', out_json)
    assert rc == 0, err
    record = json.loads(out_json.read_text())
    expected = boundary_prf(arrays['prob8'] / 255.0, arrays['membrane'], 0.5)
    assert record['boundary'] == pytest.approx(expected)
    assert record['inputs']['channel'] is None


def test_zarr_store(data, capsys, tmp_path):
    _, arrays = data
    store = tmp_path / 'vol.zarr'
    with open_container(str(store), 'a', 'output') as c:
        for key in ('seg', 'gt'):
            c.create_volume(key, SHAPE, arrays[key].dtype, chunks=(2, 12, 10))[...] = arrays[key]
    out_json = tmp_path / 'z.json'
    rc, out, err = run(capsys, '%s:seg' % store, '%s:gt' % store, '--2d', '--json', out_json)
    assert rc == 0, err
    expected = segmentation_scores(arrays['seg'], arrays['gt'], two_d=True)
    assert json.loads(out_json.read_text())['segmentation']['rand_error'] == pytest.approx(expected['rand_error'])
    assert '2D: mean of 4 sections' in out


def test_boundary_without_gt_boundary_is_noted(data, capsys):
    h5, _ = data
    rc, out, err = run(capsys, h5 + ':seg', h5 + ':gt', '--boundary', h5 + ':prob2', '--raw', h5 + ':raw')
    assert rc == 0
    assert 'need a 0/1 membrane ground truth (--gt-boundary)' in err and '--raw is only drawn' in err
    assert 'boundary f1' not in out


@pytest.mark.parametrize('argv,message', [
    (['{d}/missing.h5:seg', '{h5}:gt'], 'SEG file {d}/missing.h5 does not exist'),
    (['{h5}:seg', '{h5}:nothing'], "GT {h5} has no dataset 'nothing'"),
    (['{h5}', '{h5}:gt'], 'SEG {h5!r}: give the HDF5 file and the dataset as file.h5:key'),
    (['{h5}:seg', '{h5}:small_gt'], 'SEG {h5}:seg has shape (4, 24, 20) but GT {h5}:small_gt has shape (4, 24, 10)'),
    (['{h5}:fseg', '{h5}:gt'], 'SEG {h5}:fseg must hold integer labels, got float32 (a probability map?'),
    (['{h5}:seg', '{h5}:membrane', '--gt-boundary', '--boundary', '{h5}:prob2', '--channel', '2'],
     '--channel 2 is out of range: PROB {h5}:prob2 has 2 channels'),
    (['{h5}:seg', '{h5}:membrane', '--gt-boundary', '--boundary', '{h5}:prob8', '--channel', '0'],
     '--channel 0 given, but PROB {h5}:prob8 has no channel axis'),
    (['{h5}:seg', '{h5}:membrane255', '--gt-boundary'], 'GT {h5}:membrane255: gt_boundary must be a 0/1 membrane'),
    (['{h5}:seg', '{h5}:gt', '--png', '{d}/no/such/dir/out.png'], 'cannot write --png {d}/no/such/dir/out.png'),
])
def test_errors_exit_2_with_a_message_naming_the_input(data, capsys, argv, message):
    h5, _ = data
    d = os.path.dirname(h5)
    rc, out, err = run(capsys, *[a.format(h5=h5, d=d) for a in argv])
    assert rc == 2
    assert err.startswith('elektronn-evaluate: error: ')
    assert message.format(h5=h5, d=d) in err
    assert 'Traceback' not in err and out == ''


def test_module_runs_with_help():
    result = subprocess.run([sys.executable, '-m', 'elektronn.cli.evaluate', '--help'], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert 'elektronn-evaluate' in result.stdout and 'H(SEG | GT) in bits' in result.stdout
    assert 'examples:' in result.stdout and '--gt-boundary' in result.stdout


def test_recorded_axes_are_brought_to_zxy(tmp_path, capsys):
    """An HDF5 prediction of the xyz layout (class, x, y, z) and labels (x, y, z), as elektronn-predict and
    elektronn-segment write them, score as their (z, x, y) versions."""
    arrays = make_volumes()
    path = tmp_path / 'xyz.h5'
    with h5py.File(path, 'w') as f:
        f['seg'] = arrays['seg'].transpose(1, 2, 0)
        f['seg'].attrs['axes'] = '(x, y, z)'
        f['prob'] = arrays['prob2'].transpose(0, 2, 3, 1)
        f['prob'].attrs['axes'] = '(class, x, y, z)'
        f['membrane'] = arrays['membrane']
    out = tmp_path / 'r.json'
    assert main(['%s:seg' % path, '%s:membrane' % path, '--gt-boundary', '--2d', '--boundary', '%s:prob' % path,
                 '--json', str(out)]) == 0
    got = json.load(open(out))
    gt = gt_segmentation_from_boundaries(arrays['membrane'], two_d=True)
    expected = evaluate(arrays['seg'], gt, boundary=arrays['prob2'][1], gt_boundary=arrays['membrane'], two_d=True)
    assert got['segmentation']['voi_split'] == pytest.approx(expected['segmentation']['voi_split'])
    assert got['segmentation']['rand_error'] == pytest.approx(expected['segmentation']['rand_error'])
    assert got['boundary']['f1'] == pytest.approx(expected['boundary']['f1'])
