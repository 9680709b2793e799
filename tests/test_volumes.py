"""The volume layer: specs, HDF5 and Zarr (v2 and v3) behind one API, OME-Zarr images, and errors that name
the file, the key and the fix."""
import json
import os

import h5py
import numpy as np
import pytest
import zarr

from elektronn import volumes
from elektronn.inference.blocks import BlockLedger, BlockPlan
from elektronn.volumes import VolumeError, open_container, open_volume, parse_spec


def test_specs():
    assert parse_spec('a/vol.zarr:raw') == ('a/vol.zarr', 'raw')
    assert parse_spec('vol.zarr:volumes/raw/s0') == ('vol.zarr', 'volumes/raw/s0')
    assert parse_spec('/d/vol.zarr/volumes/raw') == ('/d/vol.zarr', 'volumes/raw')
    assert parse_spec('vol.zarr') == ('vol.zarr', None)  # the root array or image
    assert parse_spec('out.h5', 'output', default_key='prob') == ('out.h5', 'prob')
    assert parse_spec('~/x.h5:k')[0] == os.path.expanduser('~/x.h5')
    with pytest.raises(VolumeError, match="input 'raw.h5': give the HDF5 file and the dataset as file.h5:key"):
        parse_spec('raw.h5')


@pytest.mark.parametrize('ext', ['h5', 'zarr'])
def test_create_read_write_and_attributes(tmp_path, ext):
    path = str(tmp_path / ('v.' + ext))
    data = np.arange(6 * 8 * 10, dtype=np.float32).reshape(6, 8, 10)
    with open_container(path, 'a', 'output') as c:
        vol = c.create_volume('grp/data', data.shape, data.dtype, chunks=(3, 4, 5), attrs=dict(note='x', n=[1, 2]))
        vol[...] = data
        vol[0:3, 0:4, 0:5] = -1
        assert vol.chunks == (3, 4, 5) and vol.ndim == 3 and vol.size == data.size
        assert c.kind('grp') == 'group' and c.kind('grp/data') == 'array' and c.kind('nothing') is None
        assert c.array_names() == ['grp/data']
    with open_volume('%s:grp/data' % path) as vol:
        assert vol.shape == data.shape and vol.dtype == np.float32 and vol.format == ('hdf5' if ext == 'h5' else 'zarr')
        expected = data.copy()
        expected[0:3, 0:4, 0:5] = -1
        np.testing.assert_array_equal(vol[...], expected)
        np.testing.assert_array_equal(vol[1:4, 2, 3:9], expected[1:4, 2, 3:9])
        assert vol.attrs['note'] == 'x' and list(vol.attrs['n']) == [1, 2]
        with pytest.raises(VolumeError, match='is open read-only; open it for writing'):
            vol[0, 0, 0] = 5
    with open_container(path, 'a') as c:
        assert c.require_volume('grp/data', data.shape, np.float32).shape == data.shape
        with pytest.raises(VolumeError, match=r'grp/data has the shape \(6, 8, 10\) and dtype float32, but shape '
                                              r'\(6, 8, 11\) and dtype float32 are needed'):
            c.require_volume('grp/data', (6, 8, 11), np.float32)
        with pytest.raises(VolumeError, match='grp/data already exists'):
            c.create_volume('grp/data', (1,), np.uint8)
        c.delete('grp/data')
        assert 'grp/data' not in c


def test_zarr_v3_stores_and_root_arrays_are_read(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (5, 7, 9), dtype=np.uint8)
    group = zarr.open_group(str(tmp_path / 'v3.zarr'), mode='w', zarr_format=3)
    group.create_array('volumes/raw', shape=data.shape, dtype=data.dtype, chunks=(2, 7, 9))[...] = data
    np.testing.assert_array_equal(open_volume(str(tmp_path / 'v3.zarr:volumes/raw'))[...], data)
    np.testing.assert_array_equal(open_volume(str(tmp_path / 'v3.zarr/volumes/raw'))[2:4], data[2:4])
    zarr.open_array(str(tmp_path / 'root.zarr'), mode='w', shape=data.shape, dtype=data.dtype)[...] = data
    np.testing.assert_array_equal(open_volume(str(tmp_path / 'root.zarr'))[...], data)
    with open_container(str(tmp_path / 'v3.zarr'), 'a') as c:  # new arrays in a v3 store stay v3
        c.create_volume('more', (4,), np.float32, chunks=(2,))[...] = 1.0
    assert zarr.open_array(str(tmp_path / 'v3.zarr/more')).metadata.zarr_format == 3


def test_ome_zarr_images_round_trip(tmp_path):
    from ome_zarr_models.v04 import Image
    path = str(tmp_path / 'img.zarr')
    with open_container(path, 'a', 'output') as c:
        vol = c.create_volume('prob', (2, 4, 6, 8), np.float32, chunks=(2, 2, 3, 4),
                              ome_axes=[('c', 'channel'), ('z', 'space'), ('x', 'space'), ('y', 'space')],
                              voxel_size=([1.0, 30.0, 4.0, 4.0], 'nanometer'), translation=[0, 60, 20, 20])
        vol[...] = 0.5
        assert vol.name == path + ':prob' and vol.key == 'prob/0'
    meta = json.load(open(os.path.join(path, 'prob', '.zattrs')))['multiscales'][0]
    assert meta['version'] == '0.4' and meta['datasets'][0]['path'] == '0'
    Image.from_zarr(zarr.open_group(path + '/prob', mode='r'))  # raises if not valid NGFF 0.4
    with open_volume(path + ':prob') as vol:  # the image group stands for its first scale
        assert vol.image_key == 'prob' and vol.shape == (2, 4, 6, 8) and float(vol[0, 0, 0, 0]) == 0.5
        assert vol.voxel_size() == ((1.0, 30.0, 4.0, 4.0), 'nanometer')


def test_voxel_size_from_attributes(tmp_path):
    with h5py.File(tmp_path / 'a.h5', 'w') as f:
        f['raw'] = np.zeros((4, 4, 4), np.uint8)
        f['raw'].attrs['element_size_um'] = [0.03, 0.004, 0.004]
        f['plain'] = np.zeros(3)
    assert open_volume(str(tmp_path / 'a.h5:raw')).voxel_size() == ((0.03, 0.004, 0.004), 'micrometer')
    assert open_volume(str(tmp_path / 'a.h5:plain')).voxel_size() is None


@pytest.mark.parametrize('ext', ['h5', 'zarr'])
def test_errors_name_file_key_and_fix(tmp_path, ext):
    path = str(tmp_path / ('v.' + ext))
    with open_container(path, 'a') as c:
        c.create_volume('raw', (4, 4), np.uint8)
        c.create_volume('grp/inner', (2,), np.uint8)
    kind = 'file' if ext == 'h5' else 'store'
    with pytest.raises(VolumeError, match=r'input %s .*none.%s does not exist' % (kind, ext)):
        open_volume(str(tmp_path / ('none.' + ext + ':raw')))
    with pytest.raises(VolumeError, match=r"v.%s has no dataset 'rwa' \(it has: grp/inner, raw\)" % ext):
        open_volume(path + ':rwa')
    with pytest.raises(VolumeError, match=r'v.%s:grp is a group, not a dataset \(its datasets: inner\); give the key '
                                          r'of an array' % ext):
        open_volume(path + ':grp')
    with pytest.raises(VolumeError, match=r'is open read-only; cannot write'):
        with open_container(path, 'r') as c:
            c.create_volume('new', (2,), np.uint8)


def test_unsupported_and_wrong_files(tmp_path):
    with pytest.raises(VolumeError, match=r"output .*out.tif: unsupported suffix '.tif'; name HDF5 files .h5 or "
                                          r'.hdf5 and Zarr stores .zarr'):
        open_container(str(tmp_path / 'out.tif'), 'a', 'output')
    (tmp_path / 'text.dat').write_text('hello')
    with pytest.raises(VolumeError, match=r'text.dat is neither an HDF5 file nor a Zarr store'):
        open_container(str(tmp_path / 'text.dat'))
    (tmp_path / 'broken.h5').write_text('hello')
    with pytest.raises(VolumeError, match=r'input file .*broken.h5 cannot be opened as HDF5'):
        open_container(str(tmp_path / 'broken.h5'))
    (tmp_path / 'empty.zarr').mkdir()
    with pytest.raises(VolumeError, match=r'empty.zarr holds no Zarr metadata \(.zgroup, .zarray or zarr.json\)'):
        open_container(str(tmp_path / 'empty.zarr'))
    (tmp_path / 'folder').mkdir()
    with pytest.raises(VolumeError, match=r'folder is neither an HDF5 file nor a Zarr store'):
        open_container(str(tmp_path / 'folder'))
    (tmp_path / 'file.zarr').write_text('hello')
    with pytest.raises(VolumeError, match=r'file.zarr is a file, not a Zarr store'):
        open_container(str(tmp_path / 'file.zarr'))
    with h5py.File(tmp_path / 'noext', 'w') as f:  # a file without a suffix is recognised by its content
        f['raw'] = np.ones(3)
    assert volumes.storage_format(str(tmp_path / 'noext')) == 'hdf5'
    np.testing.assert_array_equal(open_volume(str(tmp_path / 'noext'), 'raw')[...], 1)


@pytest.mark.parametrize('ext', ['h5', 'zarr'])
def test_ledger_records_blocks(tmp_path, ext):
    plan = BlockPlan((5, 9, 9), (2, 4, 4))
    assert plan.n_blocks == 27 and plan.block_bounds(26) == ((4, 8, 8), (5, 9, 9))
    assert [plan.block_bounds(n) for n, _, _ in plan.blocks()] == [(a, b) for _, a, b in plan.blocks()]
    path = str(tmp_path / ('o.' + ext))
    with open_container(path, 'a') as c:
        ledger = BlockLedger.create(c, 'prob', plan)
        assert not ledger.done().any() and ledger.n_blocks == 27
        ledger.mark(3)
        ledger.mark(26)
    with open_container(path) as c:
        assert np.flatnonzero(BlockLedger.open(c, 'prob').done()).tolist() == [3, 26]
    if ext == 'zarr':  # every flag is an object of its own: writers of different blocks never share one
        assert sorted(os.listdir(os.path.join(path, 'prob_done')))[-2:] == ['26', '3']
