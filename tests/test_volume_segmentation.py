"""Block-wise segmentation of volumes (elektronn.segmentation.segment_volume) and elektronn-segment."""
import json
import os

import h5py
import numpy as np
import pytest

from elektronn.cli.segment import main as segment_main
from elektronn.inference.blocks import min_blocks_for
from elektronn.segmentation import SegmentationError, Segmenter, segment_volume
from elektronn.segmentation import volume_segmentation
from elektronn.volumes import open_container, open_volume
from synthetic_cells import affinity_map, boundary_map, same_partition, voronoi_cells

SHAPE = (24, 64, 64)
BLOCK = (12, 32, 32)   # 2 x 2 x 2 blocks
HALO = (24, 24, 24)    # larger than a cell (about 17 voxels across): blocks agree with the whole volume
SEGMENTER = Segmenter(kind='boundaries', min_seed_distance=4, min_size=30)


@pytest.fixture(scope='module')
def cells():
    return voronoi_cells(SHAPE, 20, seed=3)


@pytest.fixture(scope='module')
def prob_file(tmp_path_factory, cells):
    path = tmp_path_factory.mktemp('prob') / 'prob.h5'
    with h5py.File(path, 'w') as f:
        f['prob'] = boundary_map(cells, seed=1)
        f['two'] = np.stack([1 - f['prob'][:], f['prob'][:]])            # (class, z, x, y)
        f['uint8'] = (f['prob'][:] * 255).astype(np.uint8)
        f['labels'] = cells
    return path


def read(spec):
    with open_volume(spec) as v:
        return v.read()


def run(*args, **kwargs):
    kwargs.setdefault('show_progress', False)
    return segment_volume(*args, **kwargs)


def test_blockwise_equals_in_memory_up_to_relabelling(prob_file, tmp_path, cells):
    prob = read('%s:prob' % prob_file)
    whole = SEGMENTER(prob[None])
    result = run('%s:prob' % prob_file, '%s:seg' % (tmp_path / 'seg.zarr'), SEGMENTER, block_shape=BLOCK, halo=HALO)
    seg = read('%s:seg' % (tmp_path / 'seg.zarr'))
    assert result['blocks'] == 8 and seg.shape == SHAPE and seg.dtype == np.uint32
    assert same_partition(seg, whole)
    assert result['segments'] == whole.max() == len(np.unique(seg)) - (0 in seg)
    assert set(np.unique(seg)) - {0} == set(range(1, result['segments'] + 1))   # consecutive labels
    assert np.array_equal(seg > 0, whole > 0)  # the same voxels unassigned
    # the cells are recovered: every cell is mostly one segment
    from elektronn.evaluation import adapted_rand_error
    assert adapted_rand_error(seg, cells)['are'] < 0.1


def test_blockwise_cut_segments_join_across_faces(prob_file, tmp_path):
    """Every segment that crosses a block face is one segment, not one per block."""
    run('%s:prob' % prob_file, '%s:seg' % (tmp_path / 's.h5'), SEGMENTER, block_shape=BLOCK, halo=HALO)
    seg = read('%s:seg' % (tmp_path / 's.h5'))
    crossing = set(np.unique(seg[11])) & set(np.unique(seg[12])) - {0}
    assert len(crossing) > 5


def test_small_halo_is_worse_never_inconsistent(prob_file, tmp_path):
    """With too little context blocks may disagree; labels stay consistent (consecutive, no overlaps)."""
    result = run('%s:prob' % prob_file, '%s:seg' % (tmp_path / 'seg.zarr'), SEGMENTER, block_shape=BLOCK,
                 halo=(1, 1, 1))
    seg = read('%s:seg' % (tmp_path / 'seg.zarr'))
    assert set(np.unique(seg)) - {0} == set(range(1, result['segments'] + 1))


def test_two_d_blockwise_equals_in_memory(prob_file, tmp_path):
    segmenter = Segmenter(kind='boundaries', two_d=True, min_seed_distance=3, dtype='uint64')
    prob = read('%s:prob' % prob_file)
    result = run('%s:prob' % prob_file, '%s:seg' % (tmp_path / 'seg.zarr'), segmenter, block_shape=(5, 32, 32),
                 halo=(3, 24, 24))
    seg = read('%s:seg' % (tmp_path / 'seg.zarr'))
    assert seg.dtype == np.uint64
    assert same_partition(seg, segmenter(prob[None]))
    assert not set(np.unique(seg[4])) & set(np.unique(seg[5])) - {0}   # sections are never joined
    with open_volume('%s:seg' % (tmp_path / 'seg.zarr')) as v:
        assert json.loads(v.attrs['elektronn_segmentation'])['halo_zxy'] == [0, 24, 24]
    assert result['segments'] == seg.max()


def test_channels_layouts_and_uint8(prob_file, tmp_path):
    prob = read('%s:prob' % prob_file)
    whole = SEGMENTER(prob[None])
    run('%s:two' % prob_file, '%s:a' % (tmp_path / 'o.h5'), SEGMENTER)   # 2 classes: class 1 is the boundary
    assert same_partition(read('%s:a' % (tmp_path / 'o.h5')), whole)
    # an (x, y, z) map, as elektronn-predict writes for the xyz layout: the labels follow its axis order
    with h5py.File(tmp_path / 'xyz.h5', 'w') as f:
        f['p'] = prob.transpose(1, 2, 0)
    run('%s:p' % (tmp_path / 'xyz.h5'), '%s:b' % (tmp_path / 'o.h5'), SEGMENTER, axes='xyz', block_shape=BLOCK,
        halo=HALO)
    seg = read('%s:b' % (tmp_path / 'o.h5'))
    assert seg.shape == (64, 64, 24) and same_partition(seg.transpose(2, 0, 1), whole)
    run('%s:uint8' % prob_file, '%s:c' % (tmp_path / 'o.h5'), SEGMENTER)
    assert same_partition(read('%s:c' % (tmp_path / 'o.h5')), SEGMENTER(read('%s:uint8' % prob_file)[None] / 255.))


def test_affinities_are_recognised_by_their_channels(tmp_path, cells):
    affs = affinity_map(cells, seed=2)
    settings = dict(min_seed_distance=4, merge_threshold=0.5)
    whole = Segmenter(kind='affinities', **settings)(affs)
    with h5py.File(tmp_path / 'affs.h5', 'w') as f:
        f['three'] = affs
        f['six'] = np.stack([1 - affs, affs], 1).reshape((6,) + SHAPE)   # 2 classes per edge, edge 0 first
    for key in ('three', 'six'):
        run('%s:%s' % (tmp_path / 'affs.h5', key), '%s:%s' % (tmp_path / 'seg.zarr', key), Segmenter(**settings))
        assert same_partition(read('%s:%s' % (tmp_path / 'seg.zarr', key)), whole)
    from elektronn.evaluation import adapted_rand_error
    assert adapted_rand_error(whole, cells)['are'] < 0.1


def test_zarr_output_is_an_ome_label_image_and_work_is_removed(prob_file, tmp_path):
    out = tmp_path / 'seg.zarr'
    run('%s:prob' % prob_file, '%s:seg' % out, SEGMENTER, block_shape=BLOCK, halo=HALO)
    with open_container(str(out), 'r') as c:
        assert c.kind('seg') == 'group' and 'seg_work' not in c
        record = json.loads(c.volume('seg').attrs['elektronn_segmentation'])
    assert record['status'] == 'complete' and record['segments'] > 0 and record['block_zxy'] == list(BLOCK)
    attrs = json.load(open(out / 'seg' / '.zattrs'))
    assert [a['name'] for a in attrs['multiscales'][0]['axes']] == ['z', 'x', 'y']
    # HDF5 output: the work arrays live in a Zarr store beside it, removed at the end
    run('%s:prob' % prob_file, '%s:seg' % (tmp_path / 'seg.h5'), SEGMENTER, block_shape=BLOCK, halo=HALO)
    assert sorted(os.listdir(tmp_path)) == ['seg.h5', 'seg.zarr']


class _Interrupt:
    """Replace a pass of the segmentation task by one that stops (KeyboardInterrupt) after ``after`` blocks."""

    def __init__(self, monkeypatch, stage, after):
        original = getattr(volume_segmentation._SegmentationTask, '_' + stage)
        calls = []

        def stopping(task, *args):
            if len(calls) == after:
                raise KeyboardInterrupt
            calls.append(1)
            return original(task, *args)
        monkeypatch.setattr(volume_segmentation._SegmentationTask, '_' + stage, stopping)


@pytest.mark.parametrize('stage', ['fragments', 'match', 'relabel'])
@pytest.mark.parametrize('fmt', ['zarr', 'h5'])
def test_interrupted_segmentation_resumes_to_the_same_result(prob_file, tmp_path, monkeypatch, stage, fmt):
    spec = '%s:seg' % (tmp_path / ('seg.' + fmt))
    kwargs = dict(block_shape=BLOCK, halo=HALO)
    with monkeypatch.context() as m:
        _Interrupt(m, stage, after=3)
        with pytest.raises(KeyboardInterrupt):
            run('%s:prob' % prob_file, spec, SEGMENTER, **kwargs)
    with pytest.raises(SegmentationError, match='already exists; use --resume'):
        run('%s:prob' % prob_file, spec, SEGMENTER, **kwargs)
    with pytest.raises(SegmentationError, match='differs in segmenter'):
        run('%s:prob' % prob_file, spec, Segmenter(kind='boundaries', min_size=5), resume=True, **kwargs)
    result = run('%s:prob' % prob_file, spec, SEGMENTER, resume=True, **kwargs)
    whole = SEGMENTER(read('%s:prob' % prob_file)[None])
    assert same_partition(read(spec), whole) and result['segments'] == whole.max()
    again = run('%s:prob' % prob_file, spec, SEGMENTER, resume=True, **kwargs)   # complete: nothing to do
    assert again['segments'] == result['segments']
    run('%s:prob' % prob_file, spec, Segmenter(kind='boundaries', min_size=4000), overwrite=True, **kwargs)
    assert 0 < read(spec).max() < whole.max()


def test_segment_volume_errors(prob_file, tmp_path):
    prob = '%s:prob' % prob_file
    with pytest.raises(SegmentationError, match="has no dataset 'nope'"):
        run('%s:nope' % prob_file, '%s:s' % (tmp_path / 'o.h5'))
    with pytest.raises(SegmentationError, match='holds uint32 values; a probability map is float or uint8'):
        run('%s:labels' % prob_file, '%s:s' % (tmp_path / 'o.h5'))
    with pytest.raises(SegmentationError, match='would replace the input'):
        run(prob, prob)
    with pytest.raises(SegmentationError, match='channel 2 does not exist'):
        run('%s:two' % prob_file, '%s:s' % (tmp_path / 'o.h5'), channel=2)
    with pytest.raises(SegmentationError, match='axis order'):
        run(prob, '%s:s' % (tmp_path / 'o.h5'), axes='czxy')
    with pytest.raises(SegmentationError, match='halo must be 3'):
        run(prob, '%s:s' % (tmp_path / 'o.h5'), halo=(1, 2))
    with pytest.raises(SegmentationError, match='an HDF5 file, which only one process may write'):
        run(prob, '%s:s' % (tmp_path / 'o.h5'), client=object())
    with pytest.raises(ValueError, match="kind must be one of boundaries, affinities"):
        Segmenter(kind='membranes')
    with pytest.raises(ValueError, match='threshold must be between 0 and 1'):
        Segmenter(threshold=1.5)
    (tmp_path / 'o.h5.s_work.zarr').mkdir()
    with pytest.raises(SegmentationError, match='is in the way of the work arrays'):
        run(prob, '%s:s' % (tmp_path / 'o.h5'))


def test_cli_segments_and_reports_errors(prob_file, tmp_path, capsys):
    out = '%s:seg' % (tmp_path / 'seg.zarr')
    assert segment_main(['%s:prob' % prob_file, out, '--min-size', '30', '--min-seed-distance', '4',
                         '--block-shape', '32,32,12', '--halo', '24']) == 0
    printed = capsys.readouterr().out
    assert 'in 8 blocks of (12, 32, 32)' in printed and 'segments in' in printed
    assert same_partition(read(out), SEGMENTER(read('%s:prob' % prob_file)[None]))
    assert segment_main(['%s:prob' % prob_file, out]) == 2
    assert 'already exists; use --resume' in capsys.readouterr().err
    assert segment_main(['%s:nope' % prob_file, out, '--overwrite']) == 2
    err = capsys.readouterr().err
    assert err.startswith('elektronn-segment: error:') and "has no dataset 'nope'" in err
    assert segment_main(['%s:labels' % prob_file, str(tmp_path / 'x.h5:s')]) == 2
    assert 'holds uint32 values' in capsys.readouterr().err
    assert segment_main(['%s:prob' % (tmp_path / 'missing.h5'), str(tmp_path / 'x.h5:s')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        segment_main(['%s:prob' % prob_file, out, '--threshold', '2'])
    assert 'must be a number between 0 and 1' in capsys.readouterr().err


def test_on_a_local_dask_cluster(prob_file, tmp_path):
    from elektronn.inference.runners import cluster_client
    out, planned = '%s:seg' % (tmp_path / 'seg.zarr'), '%s:planned' % (tmp_path / 'seg.zarr')
    single = run('%s:prob' % prob_file, '%s:single' % (tmp_path / 'seg.zarr'), SEGMENTER, halo=HALO)
    assert single['blocks'] == 1  # the volume fits the default memory
    with cluster_client(workers=2, threads=1) as client:
        result = run('%s:prob' % prob_file, out, SEGMENTER, block_shape=BLOCK, halo=HALO, client=client)
        shared = run('%s:prob' % prob_file, planned, SEGMENTER, halo=HALO, client=client)
    assert result['blocks'] == 8
    assert same_partition(read(out), SEGMENTER(read('%s:prob' % prob_file)[None]))
    # planned as prediction plans: two blocks per worker, so that both work; the labelling is the one block's
    assert shared['blocks'] == 4 and shared['block'] == (24, 32, 32)
    assert same_partition(read(planned), read('%s:single' % (tmp_path / 'seg.zarr')))
    assert shared['segments'] == single['segments']


def test_a_cluster_gets_two_blocks_per_worker(prob_file):
    class Client:  # what the planner asks of a distributed.Client
        def __init__(self, workers):
            self.workers = workers

        def nthreads(self):
            return {'tcp://127.0.0.1:%i' % i: 1 for i in range(self.workers)}

    shape, plan = (24, 64, 64), volume_segmentation._block_shape
    assert min_blocks_for(None) == 1 and min_blocks_for(Client(0)) == 2 and min_blocks_for(Client(3)) == 6
    assert plan(shape, None, HALO, 2.0) == shape
    assert plan(shape, None, HALO, 2.0, min_blocks_for(Client(3))) == (24, 16, 32)  # 8 blocks: 4 are too few
    assert plan(shape, None, HALO, 2.0, 10 ** 6) == (12, 16, 16)  # not below 16 voxels a side (nor forever)
    assert plan(shape, (24, 64, 64), HALO, 2.0, 6) == shape  # a block shape given is used as given
