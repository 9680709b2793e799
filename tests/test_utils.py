"""Atomic, durable file writes (elektronn.utils.atomic_write / atomic_path)."""
import os

import pytest

from elektronn import utils


def record_calls(monkeypatch):
    """Log of the fsync and replace calls (what each fsync'd: 'file' or 'dir')."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append('fsync ' + ('dir' if os.path.isdir('/proc/self/fd/%i' % fd) else 'file'))
        return real_fsync(fd)

    def replace(a, b):
        calls.append('replace')
        return real_replace(a, b)
    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    return calls


@pytest.mark.parametrize('use_path', [False, True])
def test_data_on_disk_before_the_rename_and_the_folder_after(tmp_path, monkeypatch, use_path):
    calls = record_calls(monkeypatch)
    target = tmp_path / 'x.txt'
    if use_path:
        with utils.atomic_path(target) as tmp:
            with open(tmp, 'w') as f:
                f.write('new')
    else:
        with utils.atomic_write(target, 'w') as f:
            f.write('new')
    assert calls == ['fsync file', 'replace', 'fsync dir']
    assert target.read_text() == 'new'
    assert os.listdir(tmp_path) == ['x.txt']


@pytest.mark.parametrize('use_path', [False, True])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, use_path):
    target = tmp_path / 'x.txt'
    target.write_text('old')
    with pytest.raises(OSError, match='No space left'):
        if use_path:
            with utils.atomic_path(target) as tmp:
                open(tmp, 'w').write('half')
                raise OSError(28, 'No space left on device')
        else:
            with utils.atomic_write(target, 'w') as f:
                f.write('half')
                raise OSError(28, 'No space left on device')
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['x.txt']


def test_a_failed_write_names_the_file_not_its_temporary(tmp_path):
    target = tmp_path / 'x.param'
    with pytest.raises(OSError) as e:
        with utils.atomic_path(target):
            raise OSError(28, 'No space left on device', str(tmp_path / '.x.abc.tmp.param'))
    assert e.value.errno == 28 and str(e.value) == '[Errno 28] cannot write %s: No space left on device' % target


def test_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    with utils.atomic_path(tmp_path / 'run-LAST.param') as tmp:
        open(tmp, 'w').write('x')
        left = os.path.basename(tmp)
        os.link(tmp, tmp_path / left.replace('.tmp', '.tmq'))  # a name that only looks similar
    (tmp_path / left).write_text('half')                   # as a writer killed mid-write leaves it
    (tmp_path / '.hidden').write_text('mine')
    assert utils.remove_stale_temporaries(tmp_path) == [left]
    assert sorted(os.listdir(tmp_path)) == sorted(['run-LAST.param', '.hidden', left.replace('.tmp', '.tmq')])
