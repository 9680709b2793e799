"""OME-Zarr (NGFF) image metadata: writing the attributes of a one-scale image, reading its scales back.

Used by :mod:`elektronn.volumes` for the OME-Zarr outputs of ``elektronn-predict`` and
``elektronn-segment`` and for OME-Zarr image groups given as inputs: :func:`image_attrs` (NGFF 0.4 in
format v2 stores, 0.5 in v3), :func:`first_scale_path` and :func:`scale_transform`.
"""
import numpy as np

__all__ = ['OME_VERSION', 'image_attrs', 'first_scale_path', 'scale_transform']

#: The OME-Zarr (NGFF) version of the metadata written with new images in format v2 stores (v3 stores
#: get NGFF 0.5, its successor for that format).
OME_VERSION = '0.4'


def image_attrs(axes, voxel_size=None, translation=None, name=None, zarr_format=2):
    """Attributes of an OME-Zarr image group with one scale, the array ``'0'``: NGFF 0.4 in a
    format v2 store, NGFF 0.5 (the same, under ``'ome'``) in a format v3 store."""
    unit = None
    if voxel_size is not None and len(voxel_size) == 2 and not np.isscalar(voxel_size[0]):
        voxel_size, unit = voxel_size
    n = len(axes)
    scale = [1.0] * n if voxel_size is None else [float(v) for v in voxel_size]
    if len(scale) != n:
        raise ValueError('voxel_size has %i entries for %i axes' % (len(scale), n))
    transforms = [{'type': 'scale', 'scale': scale}]
    if translation is not None:
        transforms.append({'type': 'translation', 'translation': [float(t) for t in translation]})
    ome_axes = []
    for axis_name, axis_type in axes:
        entry = {'name': axis_name, 'type': axis_type}
        if axis_type == 'space' and unit:
            entry['unit'] = unit
        ome_axes.append(entry)
    multiscale = {'axes': ome_axes, 'datasets': [{'path': '0', 'coordinateTransformations': transforms}]}
    if name:
        multiscale['name'] = name
    if zarr_format == 3:
        return {'ome': {'version': '0.5', 'multiscales': [multiscale]}}
    return {'multiscales': [dict(multiscale, version=OME_VERSION)]}


def _multiscale(attrs):
    try:
        ms = attrs.get('multiscales')
        if ms is None and isinstance(attrs.get('ome'), dict):  # NGFF 0.5 (Zarr v3)
            ms = attrs['ome'].get('multiscales')
        return ms[0] if ms else None
    except (AttributeError, TypeError, KeyError, IndexError):
        return None


def first_scale_path(attrs):
    """The path of the first (full-resolution) scale of an OME-Zarr image group, or ``None``."""
    ms = _multiscale(attrs)
    try:
        return str(ms['datasets'][0]['path'])
    except (TypeError, KeyError, IndexError):
        return None


def scale_transform(attrs, level):
    """``(scale, translation, unit)`` of scale ``level`` of an OME-Zarr image (entries may be ``None``)."""
    ms = _multiscale(attrs)
    scale = translation = unit = None
    try:
        for t in ms['datasets'][level].get('coordinateTransformations', []):
            if t.get('type') == 'scale':
                scale = [float(v) for v in t['scale']]
            elif t.get('type') == 'translation':
                translation = [float(v) for v in t['translation']]
        units = [a.get('unit') for a in ms.get('axes', []) if isinstance(a, dict) and a.get('type') == 'space']
        unit = units[0] if units and units[0] else None
    except (TypeError, KeyError, IndexError, AttributeError):
        pass
    return scale, translation, unit
