"""Fault injection: kill, interrupt, starve and feed bad input to ELEKTRONN -- nothing may be lost.

Each kind prints one JSON line (``emit`` of ``_pipeline_setup``). Runs are tiny (a 2D CNN on the
synthetic ``BlobData`` of ``tests/synthetic_data.py``, a 3D img-img run made by
``tests/pipeline_helpers.make_prediction_run``), their configs are written into a work folder with
``save_path`` inside it, and ``HOME`` points to an empty folder (no user config). Child processes run
``python -m elektronn.train`` / ``python -m elektronn.cli.predict`` with ``OMP_NUM_THREADS=1`` in a
session of their own; a kill hits the trainer, then whatever it left running (a plot process) is
given 10 s to finish and killed too.

What is guaranteed, and how each figure is measured:

``kill_train``
    ``elektronn-train cfg.py`` (``seed`` fixed, ``background_processes = False``) is SIGKILLed at
    random moments and continued with ``elektronn-train SAVE_DIR --resume`` until its ``n_steps`` are
    done; a chain of kills and resumes ends with one run to the end, and a new chain starts until
    ``--kill-trials`` kills are done. The moments cycle through: uniform over the duration of an
    uninterrupted run (measured once; ``--quick`` skips that measurement), uniform over its start-up,
    right after the k-th status line (a history step: plots start), the instant a temporary file of
    an atomic write appears (parameters, resume state, history CSV, plots), and a console session
    (a pseudo-terminal: ctrl+c, ``save``, kill). After every kill the save directory is checked:
    every file under its final name must be complete (HDF5 files open and every dataset and
    attribute reads, ``.param`` files load, the history CSV parses with increasing steps, PNGs
    verify and end with IEND, ``.npy`` load, configs compile); the resumed run must start at most
    one history interval before the furthest step any killed process had begun (counted from the
    batches the data class logs per process). A chain's final ``<save_name>_end.param`` must equal,
    array by array and bit by bit, the one of an uninterrupted run with the same seed (in-process
    reference trajectory; without ``--quick`` also an uninterrupted ``elektronn-train``), and its
    history steps must be those of the uninterrupted run.
    Figure: ``trials`` (kills), ``resumes``/``resumes_ok``, ``files_unreadable`` (0),
    ``step_regressions_beyond_interval`` (0), ``param_mismatches`` (0), ``history_mismatches`` (0),
    ``last_pair_inconsistent`` (``-LAST.state.h5`` names a parameter file whose SHA-256 differs),
    ``temp_files_left`` (temporary files a kill left behind; harmless, reported).

``signals_train``
    Without a terminal, ctrl+c and SIGTERM save and stop. Sent: SIGINT twice within 5 ms, SIGTERM
    once and SIGTERM twice, at a moment after the k-th status line, for SGD and for RPROP and CG
    (``--quick``: a double SIGINT and a SIGTERM, SGD, the first continued with ``--resume``).
    After the run ends, ``-LAST.param`` must hold exactly the parameters after the step recorded in
    ``-LAST.state.h5`` (compared bit by bit with the in-process reference trajectory of the same
    seed and optimiser: ``half_updated`` when they equal no step's parameters, ``step_mismatches``
    when they equal another step's), the state's SHA-256 must match the file, every file must be
    readable, and ``elektronn-train SAVE_DIR --resume`` must finish with the reference's final
    parameters. Figure: ``trials``, ``half_updated`` (0), ``step_mismatches`` (0), ``resumes_ok``,
    ``resumed_params_equal``, ``exit_codes``.

``kill_predict``
    ``elektronn-predict RUN in.h5:raw out:prob --block-shape 8,8,4`` (245 blocks), SIGKILLed at
    random moments (uniform over an uninterrupted run, or uniform over its block phase; with
    ``--quick`` the uninterrupted runs are made in this process, and the kills fall into the blocks)
    and continued with ``--resume`` until done, into HDF5 and into Zarr (the formats take turns, so
    that both get kills). After every kill the output (when it exists) must open and read; the final
    output must equal (``np.array_equal``) that of an uninterrupted run, with every block flagged done. Figure: ``trials``, ``resumes_ok``,
    ``outputs_equal`` (of ``chains``), ``outputs_unreadable`` (0).

``disk_full``
    The save directory lies on a small tmpfs (mount; without the permission, the trainer's
    ``RLIMIT_FSIZE`` is set to 0 instead, so that every write fails with EFBIG). At the k-th status
    line the process is stopped, the bytes of every file are recorded, the file system is filled,
    and the process continues. It must stop with one clear error naming the file it could not write
    (a line ``error: ... <file> ... No space left on device``, no traceback), leave every earlier file
    byte-equal (the log may only grow), and leave no temporary file and no incomplete file under a
    final name; after the space is freed ``--resume`` must work. Figure: ``trials``,
    ``previous_files_intact``, ``clear_errors``, ``partial_files_left`` (0), ``resumes_ok``, ``method``.

``corrupt_inputs``
    Bad input, each case once: truncated and bit-flipped parameter files (``loadParameters``,
    ``elektronn-predict --params``, ``--resume``), truncated and bit-flipped resume states, truncated
    HDF5 cubes, NaN/Inf raw data, labels out of range, fractional labels, all-ignored label cubes,
    NaN or out-of-range labels of a data class, absurd batch sizes, configs with wrong types or
    negative or absurd sizes, a truncated prediction input. Each must give ONE clear error naming the
    file, key or parameter: an exception of a documented type (ValueError and its ConfigError, OSError
    and its FileNotFoundError, KeyError's DataKeyError, PredictionError) whose message names it, or the
    CLI printing ``error:`` with it and exiting 2 -- never a traceback from deep inside, never a
    silently wrong result. Random bit flips pass when they raise such an error or load exactly the
    original arrays. Figure: ``bad_inputs``, ``clear_errors`` (must equal ``bad_inputs``), ``failures``
    (case, input, exception type and message) and ``documented`` (inputs that are not errors by the
    documentation, e.g. an empty label dataset means all labels are 0).

Usage::

    python benchmarks/fault_injection.py [--quick] [--only KIND] [--kill-trials 30] [--predict-trials 20]
                                         [--seed 0] [--workdir DIR] [--keep]
"""
import argparse
import contextlib
import csv
import io
import json
import os
import pathlib
import pty
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..'))
TESTS = os.path.join(ROOT, 'tests')
THIS_FILE = os.path.abspath(__file__)
for _p in (HERE, TESTS):
    if _p not in sys.path:
        sys.path.insert(0, _p)
from synthetic_data import BlobData  # noqa: E402

from elektronn.utils import sha256_file  # noqa: E402

KINDS = ('kill_train', 'signals_train', 'kill_predict', 'disk_full', 'corrupt_inputs')
SAVE_NAME = 'blob'
#: The run every training fault works on: BlobData, tiny CNN, fixed seed, no background processes.
TRAIN_SETTINGS = dict(
    save_name=SAVE_NAME, data_class_name=(THIS_FILE, 'StepLogData'), data_load_kwargs={}, mode='img-scalar', n_dim=2,
    desired_input=12, filters=[3], pool=[2], nof_filters=[4], MLP_layers=[8], batch_size=10, monitor_batch_size=50,
    n_steps=240, max_runtime=10 ** 6, history_freq=[20], n_lab=2, SGD_params=dict(LR=0.05, momentum=0.9),
    plot_on=True, seed=1234, background_processes=False, torch_threads=1, print_status=True,
)
OPTIMIZER_SETTINGS = {
    'SGD': {},
    'RPROP': dict(optimizer='RPROP'),
    'CG': dict(optimizer='CG', CG_params=dict(n_steps=2, alpha=0.35, beta=0.75, max_step=0.02, min_step=8e-5)),
}
STATUS = re.compile(r'(?m)^\s*(\d{5}) NLLm=')
RESUMING = re.compile(r'Resuming %s at step (\d+)' % SAVE_NAME)
TIMEOUT = 180
HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class StepLogData(BlobData):
    """BlobData that appends ``<pid> <batch_size>`` to ``step_log`` for every training batch, so that the
    harness knows how many update steps a killed process had begun (monitor batches have another size)."""

    def __init__(self, step_log=None, **kwargs):
        super().__init__(**kwargs)
        self.step_log = step_log

    def getbatch(self, batch_size, source='train'):
        batch = super().getbatch(batch_size, source)
        if source == 'train' and self.step_log:
            with open(self.step_log, 'a') as f:
                f.write('%i %i\n' % (os.getpid(), batch_size))
        return batch


# ------------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------------
def child_env(home):
    env = dict(os.environ, HOME=home, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', MPLBACKEND='Agg')
    env['PYTHONPATH'] = os.pathsep.join([ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    os.makedirs(home, exist_ok=True)
    return env


def _group_members(pgid):
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            members.append(int(name))
    return members


class Proc:
    """A child process in a session of its own (``tty``: on a pseudo-terminal), its output collected."""

    def __init__(self, argv, cwd, env, tty=False):
        self.argv, self.t0 = list(argv), time.monotonic()
        self._chunks, self._lock = [], threading.Lock()
        self.returncode, self._popen = None, None
        if tty:
            pid, fd = pty.fork()
            if pid == 0:  # the child: pty.fork made it a session leader with the pty as its terminal
                try:
                    os.chdir(cwd)
                    os.execve(argv[0], argv, env)
                finally:
                    os._exit(127)
            self.pid, self._fd = pid, fd
        else:
            self._popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            self.pid, self._fd = self._popen.pid, self._popen.stdout.fileno()
        self.pgid = self.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                data = b''
            if not data:
                return
            with self._lock:
                self._chunks.append(data.decode(errors='replace'))

    @property
    def out(self):
        with self._lock:
            return ''.join(self._chunks)

    def poll(self):
        if self.returncode is None:
            if self._popen is not None:
                self.returncode = self._popen.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > end:
                self.kill_all()
                raise TimeoutError('%s did not end within %i s; output:\n%s' % (' '.join(self.argv), timeout,
                                                                               self.out[-3000:]))
            time.sleep(0.01)
        self._reader.join(2)
        return self.returncode

    def expect(self, pattern, count=1, timeout=TIMEOUT, start=0):
        """Wait until ``pattern`` occurs ``count`` times in the output after ``start``; the match, or
        ``None`` when the process ends first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            matches = list(regex.finditer(self.out, start))
            if len(matches) >= count:
                return matches[count - 1]
            if self.poll() is not None:
                self._reader.join(2)
                matches = list(regex.finditer(self.out, start))
                return matches[count - 1] if len(matches) >= count else None
            time.sleep(0.002)
        raise TimeoutError('%r not seen within %i s; output:\n%s' % (getattr(regex, 'pattern', regex), timeout,
                                                                      self.out[-3000:]))

    def sleep(self, seconds):
        """Sleep ``seconds`` or until the process ends; False when it ended."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.poll() is not None:
                return False
            time.sleep(0.002)
        return self.poll() is None

    def send(self, text):
        os.write(self._fd, text.encode())

    def signal(self, signum):
        """Send ``signum`` to the process; False when it had already ended."""
        if self.poll() is not None:
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def sigkill(self, grace=10.0):
        """SIGKILL the process (False when it had already ended), give what it left running (a plot
        process) ``grace`` seconds to finish, then kill that too."""
        killed = self.signal(signal.SIGKILL)
        self.wait()
        end = time.monotonic() + grace
        while _group_members(self.pgid) and time.monotonic() < end:
            time.sleep(0.02)
        self.kill_all()
        return killed

    def kill_all(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                if self._popen is not None:
                    self._popen.wait(10)
                    self.returncode = self._popen.returncode
                else:
                    self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        if self._popen is None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def train_argv(target, resume=False):
    return [sys.executable, '-m', 'elektronn.train', str(target), '--gpu=false'] + (['--resume'] if resume else [])


def predict_argv(run_dir, inp, out, *extra):
    return [sys.executable, '-m', 'elektronn.cli.predict', str(run_dir), inp, out, '--gpu=false'] + list(extra)


@contextlib.contextmanager
def quiet():
    """Swallow what the block prints (stdout and stderr)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ------------------------------------------------------------------------------------------------------
# Configs and references
# ------------------------------------------------------------------------------------------------------
def write_train_config(folder, optimizer='SGD', step_log=True, **values):
    """A config for the training faults in ``folder`` (save directory ``folder/run/``); returns its path."""
    from pipeline_helpers import write_config
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    settings = dict(TRAIN_SETTINGS, **OPTIMIZER_SETTINGS[optimizer])
    settings['data_load_kwargs'] = dict(step_log=os.path.join(folder, 'steps.log') if step_log else None)
    settings.update(values)
    return write_config(folder, base=settings)


def save_dir_of(config_path):
    return os.path.join(os.path.dirname(config_path), 'run')


def layer_params(layers):
    """The parameters of network layers as read_parameter_file gives them: ``[{name: float32 array}]``."""
    return [{n: np.array(a, dtype=np.float32) for n, a in zip(layer.param_names, layer.param_arrays())}
            for layer in layers]


def read_params(path):
    from elektronn.net.params import read_parameter_file
    layers, _ = read_parameter_file(path)
    return [{k: v for k, v in entry.items() if k != 'type'} for entry in layers]


def same_params(a, b):
    if a is None or b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if sorted(x) != sorted(y) or not all(x[k].shape == y[k].shape and np.array_equal(x[k], y[k]) for k in x):
            return False
    return True


_REFERENCES = {}


def reference_trajectory(folder, optimizer='SGD', **values):
    """Train the fault config in this process, uninterrupted; the parameters after every step
    (``{steps done: [{name: array}]}``), the history steps and the seconds it took (cached per settings)."""
    key = json.dumps([optimizer, values], sort_keys=True, default=repr)
    if key not in _REFERENCES:
        _REFERENCES[key] = _reference_trajectory(folder, optimizer, **values)
    return _REFERENCES[key]


@contextlib.contextmanager
def _in_process_trainer(cfg):
    """A quiet, non-interactive Trainer of ``cfg`` (data and network made) with one PyTorch thread meanwhile."""
    import torch
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with quiet():
            trainer = Trainer(Config(cfg, init_device=False))
            trainer.loadData()
            trainer.createNet()
        trainer.interactive = False
        yield trainer
    finally:
        torch.set_num_threads(threads)


def _reference_trajectory(folder, optimizer='SGD', **values):
    cfg = write_train_config(folder, optimizer, step_log=False, plot_on=False, **values)
    t0 = time.monotonic()
    with _in_process_trainer(cfg) as trainer:
        cnn = trainer.cnn
        snaps = {trainer.state.step: layer_params(cnn._saveable_layers())}
        training_step = cnn.trainingStep

        def recorded(*args, **kwargs):
            result = training_step(*args, **kwargs)
            snaps[trainer.state.step + 1] = layer_params(cnn._saveable_layers())
            return result
        cnn.trainingStep = recorded
        with quiet():
            outcome = trainer.run()
    if outcome != 'finished':
        raise RuntimeError('the reference run ended %r' % outcome)
    return dict(snaps=snaps, history=[int(r[0]) for r in trainer.history], seconds=time.monotonic() - t0,
                final=snaps[max(snaps)], n_steps=max(snaps))


def history_steps(save_dir):
    with open(os.path.join(save_dir, SAVE_NAME + '.history.csv')) as f:
        return [int(float(row['step'])) for row in csv.DictReader(f)]


def steps_begun(step_log, pid, batch_size):
    """Training batches process ``pid`` drew (the update steps it had begun)."""
    if not os.path.exists(step_log):
        return 0
    want = '%i %i' % (pid, batch_size)
    with open(step_log) as f:
        return sum(1 for line in f if line.strip() == want)


# ------------------------------------------------------------------------------------------------------
# Checking a save directory
# ------------------------------------------------------------------------------------------------------
def is_temporary(name):
    return name.startswith('.') and '.tmp' in name


def _check_hdf5(path):
    import h5py
    with h5py.File(path, 'r') as f:
        def visit(name, node):
            for key in node.attrs:
                node.attrs[key]
            if isinstance(node, h5py.Dataset):
                node[()]
        for key in f.attrs:
            f.attrs[key]
        f.visititems(visit)
        fmt = f.attrs.get('format')
        info = f.attrs.get('info')
    if fmt == 'ELEKTRONN parameters':
        read_params(path)
    if info is not None:
        json.loads(info)


def _check_csv(path):
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:1] != ['step']:
        raise ValueError('no header row starting with "step"')
    steps = []
    for k, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]):
            raise ValueError('row %i has %i cells, the header %i' % (k, len(row), len(rows[0])))
        for cell in row:
            if cell not in ('', 'nan'):
                float(cell)
        steps.append(float(row[0]))
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError('steps do not increase: %s' % steps)


def _check_png(path):
    from PIL import Image
    with open(path, 'rb') as f:
        data = f.read()
    if not data.startswith(PNG_SIGNATURE) or not data.endswith(b'IEND\xaeB`\x82'):
        raise ValueError('not a complete PNG (%i bytes)' % len(data))
    with Image.open(path) as im:
        im.verify()


def check_file(path):
    """``None`` when the file is complete and readable, else what is wrong."""
    name = os.path.basename(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
        if head.startswith(HDF5_SIGNATURE) or name.endswith(('.h5', '.param')):
            _check_hdf5(path)
        elif name.endswith('.csv'):
            _check_csv(path)
        elif name.endswith('.png'):
            _check_png(path)
        elif name.endswith('.npy'):
            np.load(path, allow_pickle=False)
        elif name.endswith('.py') or name == 'elektronn-train':
            with open(path) as f:
                compile(f.read(), path, 'exec')
        else:
            with open(path, 'rb') as f:
                f.read()
    except Exception as e:  # noqa: BLE001 -- any failure to read is the finding
        return '%s: %s' % (type(e).__name__, str(e)[:200])
    return None


def check_save_dir(save_dir):
    """``(problems, temporary files)`` of a save directory: files under final names that are incomplete."""
    problems, temps = [], []
    for folder, _dirs, files in os.walk(save_dir):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if is_temporary(name):
                temps.append(os.path.relpath(path, save_dir))
                continue
            err = check_file(path)
            if err:
                problems.append('%s: %s' % (os.path.relpath(path, save_dir), err))
    return problems, temps


def last_state(save_dir):
    """What ``-LAST.state.h5`` records, or ``None`` when there is none: ``dict(step, params_file, consistent,
    own_params)``. ``consistent``: the SHA-256 it holds is the one of the parameter file it names;
    ``own_params``: the parameters of the state's own copy of that file (states that carry one), else ``None``."""
    import h5py
    path = os.path.join(save_dir, SAVE_NAME + '-LAST.state.h5')
    if not os.path.exists(path):
        return None
    with h5py.File(path, 'r') as f:
        info = json.loads(f.attrs['info'])
        own = f['params_file'][()].tobytes() if 'params_file' in f else None
    params = os.path.join(save_dir, info.get('params_file', SAVE_NAME + '-LAST.param'))
    sha = info.get('params_sha256')
    actual = sha256_file(params) if os.path.exists(params) else None
    own_params = None
    if own is not None:
        fd, tmp = tempfile.mkstemp(suffix='.param')
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(own)
            own_params = read_params(tmp)
        finally:
            os.unlink(tmp)
    return dict(step=int(info['loop']['step']), params_file=params, consistent=sha is None or sha == actual,
                own_params=own_params)




# ------------------------------------------------------------------------------------------------------
# 1. kill_train
# ------------------------------------------------------------------------------------------------------
KILL_MODES = ('uniform', 'history', 'save', 'startup', 'uniform', 'history', 'save', 'console')
QUICK_KILL_MODES = ('history', 'save', 'startup')
SAVE_TARGETS = ('.tmp.param', '.tmp.h5', 'history.csv', '.tmp.png', '.tmp.npy')


def _watch_for_temp(proc, save_dir, suffix, deadline):
    """Poll ``save_dir`` (and Backup/) until a temporary file ending in ``suffix`` appears; True if seen."""
    folders = (save_dir, os.path.join(save_dir, 'Backup'))
    while time.monotonic() < deadline and proc.poll() is None:
        for folder in folders:
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        if is_temporary(entry.name) and entry.name.endswith(suffix):
                            return True
            except FileNotFoundError:
                pass
        time.sleep(0.0005)
    return False


def _kill_at(proc, mode, rng, save_dir, timing):
    """Kill ``proc`` at a moment chosen by ``mode``; returns a description of the moment, or ``None``
    when the process ended on its own first."""
    if mode == 'uniform':
        delay = rng.uniform(0, timing['total'])
        if not proc.sleep(delay):
            return None
        what = 'after %.2f s' % delay
    elif mode == 'startup':
        delay = rng.uniform(0, timing['startup'])
        time.sleep(delay)
        what = 'start-up, after %.2f s' % delay
    elif mode == 'history':
        k = rng.randint(1, max(1, timing['history_lines'] // 2))
        if proc.expect(STATUS, count=k) is None:
            return None
        delay = rng.uniform(0, 0.05)
        time.sleep(delay)
        what = '%.3f s after status line %i' % (delay, k)
    elif mode == 'save':
        suffix = rng.choice(SAVE_TARGETS)
        seen = _watch_for_temp(proc, save_dir, suffix, time.monotonic() + timing['total'])
        what = ('while writing *%s' % suffix) if seen else 'at the end of the watch for *%s' % suffix
    else:
        raise ValueError(mode)
    return what if proc.sigkill() else None


def _kill_in_console(proc, rng):
    """A run on a pseudo-terminal: ctrl+c after a status line, then (maybe) ``save``, then SIGKILL."""
    if proc.expect(STATUS, count=rng.randint(1, 3)) is None:
        return None
    proc.send('\x03')
    if proc.expect(r'@ELEKTRONN: ', timeout=60) is None:
        return None
    what = 'in the console'
    if rng.random() < 0.7:
        proc.send('save\r')
        delay = rng.uniform(0, 0.05)
        time.sleep(delay)
        what = 'in the console, %.3f s after "save"' % delay
    return what if proc.sigkill() else None


def _measure_training(work, env):
    """Run the fault config once, uninterrupted, as a subprocess: timing and its final parameters."""
    cfg = write_train_config(os.path.join(work, 'kill_reference'))
    proc = Proc(train_argv(cfg), os.path.dirname(cfg), env)
    first = proc.expect(STATUS)
    t_first = time.monotonic() - proc.t0
    rc = proc.wait()
    total = time.monotonic() - proc.t0
    if rc != 0 or first is None:
        raise RuntimeError('the uninterrupted run failed (exit %s):\n%s' % (rc, proc.out[-3000:]))
    save_dir = save_dir_of(cfg)
    return dict(total=total, startup=t_first, history_lines=len(STATUS.findall(proc.out)),
                final=read_params(os.path.join(save_dir, SAVE_NAME + '_end.param')), history=history_steps(save_dir))


def kill_train(work, env, trials=30, seed=0, quick=False, log=print):
    rng = random.Random(seed)
    work = os.path.join(work, 'kill_train')
    ref = reference_trajectory(os.path.join(work, 'reference_inprocess'))
    freq = TRAIN_SETTINGS['history_freq'][0]
    figure = dict(trials=0, chains=0, resumes=0, resumes_ok=0, resume_failures=0, files_unreadable=0,
                  step_regressions_beyond_interval=0, max_step_regression=0, param_mismatches=0, history_mismatches=0,
                  last_pair_inconsistent=0, last_param_other_step_than_state=0, temp_files_left=0, restarts_from_scratch=0, kill_moments={}, problems=[])
    if quick:
        timing = dict(total=ref['seconds'] + 4.0, startup=2.5, history_lines=len(ref['history']))
        modes = QUICK_KILL_MODES
        figure['subprocess_reference_equal'] = None
    else:
        timing = _measure_training(work, env)
        modes = KILL_MODES
        figure['subprocess_reference_equal'] = same_params(timing['final'], ref['final'])
        timing['history_lines'] = len(ref['history'])
    figure['uninterrupted_seconds'] = round(timing['total'], 2)
    problems = figure['problems']

    def problem(text):
        if len(problems) < 40:
            problems.append(text)
        log('  PROBLEM ' + text)

    chain = 0
    while figure['trials'] < trials:
        chain += 1
        folder = os.path.join(work, 'chain%02i' % chain)
        cfg = write_train_config(folder)
        save_dir, step_log = save_dir_of(cfg), os.path.join(folder, 'steps.log')
        furthest = 0
        while True:
            state = last_state(save_dir) if os.path.isdir(save_dir) else None
            resume = state is not None
            mode = modes[figure['trials'] % len(modes)] if figure['trials'] < trials else None
            tty = mode == 'console'
            proc = Proc(train_argv(save_dir if resume else cfg, resume), folder, env, tty=tty)
            figure['resumes'] += resume
            if mode is None:
                moment = None
            elif tty:
                moment = _kill_in_console(proc, rng)
            else:
                moment = _kill_at(proc, mode, rng, save_dir, timing)
            if moment is None:
                proc.wait()
            out = proc.out
            match = RESUMING.search(out)
            start = int(match.group(1)) if match else 0
            if resume:
                if match:
                    figure['resumes_ok'] += 1
                    regression = furthest - start
                    figure['max_step_regression'] = max(figure['max_step_regression'], regression)
                    if regression > freq:
                        figure['step_regressions_beyond_interval'] += 1
                        problem('chain %i: resumed at step %i, a killed run had begun step %i' % (chain, start,
                                                                                                 furthest - 1))
                    if start != state['step']:
                        problem('chain %i: resumed at step %i but the state records %i' % (chain, start,
                                                                                          state['step']))
                elif moment is None:
                    figure['resume_failures'] += 1
                    problem('chain %i: --resume failed (exit %s): %s' % (chain, proc.returncode, out[-500:]))
            elif proc.returncode == 2 and 'already exists' in out and moment is None:
                # a re-run without --resume refused the save directory a start-up kill left behind
                figure['restarts_from_scratch'] += 1
                shutil.rmtree(save_dir)
                continue
            furthest = max(furthest, start + steps_begun(step_log, proc.pid, TRAIN_SETTINGS['batch_size']))
            if moment is not None:
                figure['trials'] += 1
                figure['kill_moments'][mode] = figure['kill_moments'].get(mode, 0) + 1
                bad, temps = check_save_dir(save_dir) if os.path.isdir(save_dir) else ([], [])
                figure['files_unreadable'] += len(bad)
                figure['temp_files_left'] += len(temps)
                for b in bad:
                    problem('chain %i, kill %s (%s): %s' % (chain, figure['trials'], moment, b))
                st = _safe(last_state, save_dir) if os.path.isdir(save_dir) else None
                if isinstance(st, str):
                    figure['files_unreadable'] += 1
                    problem('chain %i, kill %i (%s): the resume state does not read: %s' % (chain, figure['trials'],
                                                                                           moment, st))
                elif isinstance(st, dict) and not st['consistent']:
                    if st['own_params'] is None:  # the state relies on the file: resume would load another step
                        figure['last_pair_inconsistent'] += 1
                        problem('chain %i, kill %i (%s): -LAST.state.h5 (step %i) does not match %s' % (
                            chain, figure['trials'], moment, st['step'], os.path.basename(st['params_file'])))
                    else:  # harmless: the state resumes from its own copy
                        figure['last_param_other_step_than_state'] += 1
                log('  kill %i (chain %i, %s): reached step %i' % (figure['trials'], chain, moment, furthest))
                continue
            # the run ended on its own: it must have finished the training
            if proc.returncode != 0 or 'End of Training' not in out:
                problem('chain %i: the run ended with exit %s: %s' % (chain, proc.returncode, out[-800:]))
                figure['param_mismatches'] += 1
                break
            figure['chains'] += 1
            bad, temps = check_save_dir(save_dir)
            figure['files_unreadable'] += len(bad)
            for b in bad:
                problem('chain %i, finished: %s' % (chain, b))
            final = read_params(os.path.join(save_dir, SAVE_NAME + '_end.param'))
            if not same_params(final, ref['final']):
                figure['param_mismatches'] += 1
                problem('chain %i: the final parameters differ from the uninterrupted run' % chain)
            if history_steps(save_dir) != ref['history']:
                figure['history_mismatches'] += 1
                problem('chain %i: history steps %s, uninterrupted %s' % (chain, history_steps(save_dir),
                                                                         ref['history']))
            log('  chain %i finished' % chain)
            break
    return figure


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        return '%s: %s' % (type(e).__name__, e)


# ------------------------------------------------------------------------------------------------------
# 2. signals_train
# ------------------------------------------------------------------------------------------------------
SIGNAL_KINDS = ('sigint2', 'sigterm1', 'sigterm2')


def _send(proc, kind, rng):
    first = signal.SIGINT if kind == 'sigint2' else signal.SIGTERM
    if not proc.signal(first):
        return False
    if kind in ('sigint2', 'sigterm2'):
        time.sleep(rng.uniform(0, 0.005))
        proc.signal(first)
    return True


def _matching_step(params, snaps):
    return [s for s, p in snaps.items() if same_params(params, p)]


def signals_train(work, env, optimizers=('SGD', 'RPROP', 'CG'), kinds=SIGNAL_KINDS, per_kind=2, seed=0, log=print,
                  resumes=None):
    """``resumes``: continue only the first so many interrupted runs with --resume (``None``: all)."""
    rng = random.Random(seed + 1)
    work = os.path.join(work, 'signals_train')
    figure = dict(trials=0, missed=0, half_updated=0, step_mismatches=0, last_pair_inconsistent=0, files_unreadable=0,
                  resumes_ok=0, resumed_params_equal=0, exit_codes={}, optimizers=list(optimizers), problems=[])

    def problem(text):
        if len(figure['problems']) < 40:
            figure['problems'].append(text)
        log('  PROBLEM ' + text)

    n_hist = TRAIN_SETTINGS['n_steps'] // TRAIN_SETTINGS['history_freq'][0]
    for optimizer in optimizers:
        try:
            ref = reference_trajectory(os.path.join(work, optimizer, 'reference'), optimizer)
        except Exception as e:  # noqa: BLE001 -- an optimiser the trainer cannot run on this config
            problem('%s: the reference run failed: %s: %s' % (optimizer, type(e).__name__, e))
            continue
        for kind in kinds:
            for k in range(per_kind):
                folder = os.path.join(work, optimizer, '%s_%i' % (kind, k))
                cfg = write_train_config(folder, optimizer, plot_on=False)
                save_dir = save_dir_of(cfg)
                sent = False
                for attempt in range(3):
                    if os.path.isdir(save_dir):
                        shutil.rmtree(save_dir)
                    proc = Proc(train_argv(cfg), folder, env)
                    line = rng.randint(1, max(1, n_hist - 2))
                    if proc.expect(STATUS, count=line) is not None:
                        time.sleep(rng.uniform(0, 0.03))
                        sent = _send(proc, kind, rng)
                    rc = proc.wait()
                    if sent:
                        break
                    figure['missed'] += 1
                if not sent:
                    problem('%s %s: the run ended before the signal three times' % (optimizer, kind))
                    continue
                figure['trials'] += 1
                with open(os.path.join(folder, 'output.txt'), 'w') as f:
                    f.write(proc.out)
                key = '%s:%s' % (kind, rc)
                figure['exit_codes'][key] = figure['exit_codes'].get(key, 0) + 1
                where = '%s %s #%i' % (optimizer, kind, k)
                bad, _temps = check_save_dir(save_dir)
                figure['files_unreadable'] += len(bad)
                for b in bad:
                    problem('%s: %s' % (where, b))
                state = _safe(last_state, save_dir)
                if not isinstance(state, dict):
                    problem('%s: no readable resume state after the signal (exit %s): %s' % (where, rc, state))
                    figure['half_updated'] += 1
                    continue
                if not state['consistent']:
                    figure['last_pair_inconsistent'] += 1
                    problem('%s: -LAST.state.h5 does not match %s' % (where, os.path.basename(state['params_file'])))
                versions = [(os.path.basename(state['params_file']), _safe(read_params, state['params_file']))]
                if state['own_params'] is not None:
                    versions.append(('the copy in -LAST.state.h5', state['own_params']))
                steps = []
                for label, params in versions:
                    steps = _matching_step(params, ref['snaps']) if isinstance(params, list) else []
                    if state['step'] in steps:
                        continue
                    if steps:
                        figure['step_mismatches'] += 1
                        problem('%s: %s holds the parameters after step %s, the state records %i'
                                % (where, label, steps, state['step']))
                    else:
                        figure['half_updated'] += 1
                        problem('%s: %s (state step %i) equals the parameters of no step of the reference'
                                % (where, label, state['step']))
                if resumes is not None and figure['trials'] > resumes:
                    log('  %s: exit %s, state step %i, params of step %s' % (where, rc, state['step'], steps))
                    continue
                resumed = Proc(train_argv(save_dir, resume=True), folder, env)
                rc2 = resumed.wait()
                with open(os.path.join(folder, 'output-resume.txt'), 'w') as f:
                    f.write(resumed.out)
                if rc2 == 0 and RESUMING.search(resumed.out):
                    figure['resumes_ok'] += 1
                    final = _safe(read_params, os.path.join(save_dir, SAVE_NAME + '_end.param'))
                    if same_params(final, ref['final']):
                        figure['resumed_params_equal'] += 1
                    else:
                        problem('%s: the resumed run ends with other parameters than the uninterrupted one' % where)
                else:
                    problem('%s: --resume failed (exit %s): %s' % (where, rc2, resumed.out[-600:]))
                log('  %s: exit %s, state step %i, params of step %s; resume exit %s'
                    % (where, rc, state['step'], steps, rc2))
    return figure


# ------------------------------------------------------------------------------------------------------
# 3. kill_predict
# ------------------------------------------------------------------------------------------------------
PREDICT_BLOCK = '8,8,4'


def setup_prediction(work):
    """A trained 3D run (make_prediction_run) and an input volume ``in.h5:raw`` (64, 64, 20) uint8."""
    import h5py
    from pipeline_helpers import make_prediction_run
    folder = pathlib.Path(work) / 'prediction_run'
    if not (folder / 'run' / 'tiny-LAST.param').exists():
        with quiet():
            make_prediction_run(folder)
    raw = np.random.default_rng(5).integers(0, 256, (64, 64, 20)).astype(np.uint8)
    inp = folder / 'in.h5'
    if not inp.exists():
        with h5py.File(inp, 'w') as f:
            f.create_dataset('raw', data=raw, chunks=(16, 16, 10))
    return dict(folder=folder, run=str(folder / 'run'), input='%s:raw' % inp)


def read_output(path, key='prob'):
    """``(prediction, done flags)`` of an elektronn-predict output (HDF5 or Zarr)."""
    from elektronn import volumes
    with volumes.open_container(path, 'r', 'output') as c:
        return np.asarray(c.volume(key).read()), np.asarray(c.volume(key + '_done').read())


def kill_predict(work, env, trials=20, seed=0, quick=False, log=print):
    rng = random.Random(seed + 2)
    setup = setup_prediction(work)
    work = os.path.join(work, 'kill_predict')
    os.makedirs(work, exist_ok=True)
    figure = dict(trials=0, chains=0, resumes=0, resumes_ok=0, outputs_equal=0, outputs_unreadable=0,
                  kills_by_format={}, problems=[])

    def problem(text):
        if len(figure['problems']) < 40:
            figure['problems'].append(text)
        log('  PROBLEM ' + text)

    refs = {}
    for fmt in ('h5', 'zarr'):
        out = os.path.join(work, 'reference.%s' % fmt)
        argv = predict_argv(setup['run'], setup['input'], out + ':prob', '--block-shape', PREDICT_BLOCK)
        if quick:  # in this process: no start-up to wait for; the kills then fall into the blocks
            import torch
            from elektronn.cli import predict as predict_cli
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as the children (OMP_NUM_THREADS=1): the same sums, the same bits
            t0 = time.monotonic()
            try:
                with quiet():
                    rc = predict_cli.main(argv[3:])
            finally:
                torch.set_num_threads(threads)
            if rc != 0:
                raise RuntimeError('the uninterrupted prediction failed (exit %s)' % rc)
            # the blocks take about half of it (the rest builds the network)
            refs[fmt] = dict(out=read_output(out)[0], total=None, blocks=0.5 * (time.monotonic() - t0))
            continue
        proc = Proc(argv, work, env)
        blocks = proc.expect(r'Predicting .* blocks')
        t_blocks = time.monotonic()
        if proc.wait() != 0 or blocks is None:
            raise RuntimeError('the uninterrupted prediction failed:\n%s' % proc.out[-3000:])
        refs[fmt] = dict(out=read_output(out)[0], total=time.monotonic() - proc.t0,
                         blocks=time.monotonic() - t_blocks)
    chain = 0
    while figure['trials'] < trials:
        chain += 1
        kills = figure['kills_by_format']
        fmt = 'zarr' if kills.get('zarr', 0) < kills.get('h5', 0) else 'h5'  # both formats get their kills
        out = os.path.join(work, 'chain%02i.%s' % (chain, fmt))
        resume = False
        while True:
            args = ['--block-shape', PREDICT_BLOCK] + (['--resume'] if resume else [])
            proc = Proc(predict_argv(setup['run'], setup['input'], out + ':prob', *args), work, env)
            figure['resumes'] += resume
            killed = None
            if figure['trials'] < trials:
                if refs[fmt]['total'] is not None and rng.random() < 0.5:
                    delay = rng.uniform(0, refs[fmt]['total'])
                    proc.sleep(delay)
                    moment = 'after %.2f s' % delay
                else:
                    proc.expect(r'Predicting .* blocks')
                    delay = rng.uniform(0, refs[fmt]['blocks'])
                    time.sleep(delay)
                    moment = '%.2f s into the blocks' % delay
                killed = moment if proc.sigkill() else None
            if killed is None:
                proc.wait()
            if resume and (proc.returncode == 0 or killed) and 'Predicting' in proc.out:
                figure['resumes_ok'] += 1
            elif resume and not killed:
                problem('chain %i: --resume failed (exit %s): %s' % (chain, proc.returncode, proc.out[-600:]))
            if killed is not None:
                figure['trials'] += 1
                figure['kills_by_format'][fmt] = figure['kills_by_format'].get(fmt, 0) + 1
                if os.path.exists(out):
                    got = _safe(read_output, out)
                    if isinstance(got, str):
                        figure['outputs_unreadable'] += 1
                        problem('chain %i, kill %s (%s): the output does not read: %s' % (chain, figure['trials'],
                                                                                          killed, got))
                log('  predict kill %i (chain %i, %s, %s)' % (figure['trials'], chain, fmt, killed))
                resume = True
                continue
            figure['chains'] += 1
            if proc.returncode != 0:
                problem('chain %i: the prediction ended with exit %s: %s' % (chain, proc.returncode, proc.out[-600:]))
                break
            got, done = read_output(out)
            if np.array_equal(got, refs[fmt]['out']) and np.all(done):
                figure['outputs_equal'] += 1
            else:
                problem('chain %i (%s): the output differs from the uninterrupted run (%i of %i voxels; done %s)'
                        % (chain, fmt, int(np.sum(got != refs[fmt]['out'])), got.size, bool(np.all(done))))
            break
    figure['uninterrupted_seconds'] = {f: round(r['total'] or r['blocks'], 2) for f, r in refs.items()}
    return figure


# ------------------------------------------------------------------------------------------------------
# 4. disk_full
# ------------------------------------------------------------------------------------------------------
def _try_mount_tmpfs(path, size_kb):
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which('mount'):
        return False
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%ik' % size_kb, 'tmpfs', path], capture_output=True)
    return r.returncode == 0


def _unmount(path):
    subprocess.run(['umount', path], capture_output=True)


def _fill(folder):
    """Write ``folder/filler`` until the file system is full; returns the bytes written."""
    written = 0
    with open(os.path.join(folder, 'filler'), 'wb', buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            block = b'\0' * size
            while True:
                try:
                    written += f.write(block)
                except OSError:
                    break
    return written


def _snapshot(save_dir):
    files = {}
    for folder, _dirs, names in os.walk(save_dir):
        for name in names:
            if not is_temporary(name):
                path = os.path.join(folder, name)
                with open(path, 'rb') as f:
                    files[path] = f.read()
    return files


def _clear_write_error(out, save_dir):
    """Whether ``out`` has ONE clear error about a file in ``save_dir`` that could not be written, and no traceback."""
    lines = [ln for ln in out.splitlines() if 'error:' in ln.lower()]
    full = ('No space left on device', 'Errno 28', 'ENOSPC', 'File too large', 'Errno 27', 'disk')
    named = [ln for ln in lines if (save_dir.rstrip('/') in ln or SAVE_NAME in ln) and any(w in ln for w in full)]
    return bool(named) and 'Traceback' not in out


def disk_full(work, env, trials=3, seed=0, log=print, use_mount=True):
    """``use_mount=False``: inject the failures with RLIMIT_FSIZE even where a tmpfs could be mounted."""
    rng = random.Random(seed + 3)
    work = os.path.join(work, 'disk_full')
    figure = dict(trials=0, previous_files_intact=0, clear_errors=0, partial_files_left=0, resumes_ok=0,
                  exit_codes=[], method=None, problems=[], messages=[])

    def problem(text):
        if len(figure['problems']) < 40:
            figure['problems'].append(text)
        log('  PROBLEM ' + text)

    for k in range(trials):
        folder = os.path.join(work, 'trial%i' % k)
        mount = os.path.join(folder, 'fs')
        mounted = use_mount and _try_mount_tmpfs(mount, 4096)
        figure['method'] = 'tmpfs' if mounted else 'RLIMIT_FSIZE=0'
        try:
            cfg = write_train_config(folder, save_path=os.path.join(mount, 'run', ''), n_steps=10 ** 6,
                                     history_freq=[10])
            save_dir = os.path.join(mount, 'run')
            proc = Proc(train_argv(cfg), folder, env)
            line = rng.randint(1, 6)
            if proc.expect(STATUS, count=line) is None:
                problem('trial %i: the run ended before status line %i: %s' % (k, line, proc.out[-600:]))
                continue
            os.killpg(proc.pgid, signal.SIGSTOP)
            before = _snapshot(save_dir)
            if mounted:
                _fill(mount)
            else:
                for pid in _group_members(proc.pgid):
                    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
            os.killpg(proc.pgid, signal.SIGCONT)
            try:
                rc = proc.wait(60)
            except TimeoutError:
                rc = 'timeout'
            proc.kill_all()
            figure['trials'] += 1
            figure['exit_codes'].append(rc)
            out = proc.out
            with open(os.path.join(folder, 'output.txt'), 'w') as f:
                f.write(out)
            errors = [ln for ln in out.splitlines() if 'error' in ln.lower()][-3:]
            figure['messages'].append(errors)
            if _clear_write_error(out, save_dir):
                figure['clear_errors'] += 1
            else:
                tail = out[out.rfind('Traceback'):][:1500] if 'Traceback' in out else out[-800:]
                problem('trial %i: no clear error (exit %s): %s' % (k, rc, tail))
            intact = True
            for path, data in before.items():
                now = open(path, 'rb').read() if os.path.exists(path) else None
                ok = now == data or (path.endswith('.log') and now is not None and now.startswith(data))
                if not ok:
                    intact = False
                    problem('trial %i: %s changed or vanished after the disk was full (%s -> %s bytes)' % (
                        k, os.path.relpath(path, save_dir), len(data), None if now is None else len(now)))
            figure['previous_files_intact'] += intact
            bad, temps = check_save_dir(save_dir)
            if bad or temps:
                figure['partial_files_left'] += len(bad) + len(temps)
                problem('trial %i: left %s' % (k, bad + temps))
            # free the space: --resume must continue
            if mounted:
                os.unlink(os.path.join(mount, 'filler'))
            resumed = Proc(train_argv(save_dir, resume=True), folder, env)
            if resumed.expect(STATUS, count=2) is not None and RESUMING.search(resumed.out):
                figure['resumes_ok'] += 1
            else:
                problem('trial %i: --resume after freeing the space failed: %s' % (k, resumed.out[-600:]))
            resumed.sigkill()
        finally:
            if mounted:
                _unmount(mount)
        log('  disk full trial %i: exit %s' % (k, figure['exit_codes'][-1] if figure['exit_codes'] else None))
    return figure


# ------------------------------------------------------------------------------------------------------
# 5. corrupt_inputs
# ------------------------------------------------------------------------------------------------------
#: Exception types a documented error may have (ConfigError is a ValueError, FileNotFoundError an OSError).
def _documented_types():
    from elektronn.inference.volume_prediction import PredictionError
    from elektronn.training.cubes import DataKeyError
    return (ValueError, OSError, DataKeyError, PredictionError)


class Case:
    """One bad input: ``run()`` must raise a documented exception whose message contains one of
    ``needles`` (or, for a CLI, return 2 and print ``error:`` with one of them, without a traceback)."""

    def __init__(self, name, what, run, needles, cli=False, accept_same=None):
        self.name, self.what, self.run, self.needles, self.cli = name, what, run, list(needles), cli
        # accept_same(result): the result (a CLI's exit status) is correct although there is no error, e.g. a
        # bit flip in unused bytes, or a resume that took the intact copy of the parameters
        self.accept_same = accept_same


def _judge(case):
    result = dict(case=case.name, input=case.what)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            value = case.run()
    except BaseException as e:  # noqa: BLE001 -- judged below
        if isinstance(e, KeyboardInterrupt):
            raise
        msg = str(e)
        result.update(type='%s.%s' % (type(e).__module__, type(e).__name__), message=msg[:600])
        # a CLI that lets an exception out shows the user a traceback
        clear = not case.cli and isinstance(e, _documented_types()) and not isinstance(e, MemoryError) \
            and any(n in msg for n in case.needles)
        if not clear:
            result['traceback'] = ''.join(traceback.format_exception(type(e), e, e.__traceback__)[-3:])[-800:]
        result['clear'] = clear
        return result
    finally:
        os.chdir(cwd)
    if case.accept_same is not None and case.accept_same(value):
        result.update(type=None if not case.cli else 'exit %s' % value,
                      message='no error; the result equals the original', clear=True)
        return result
    if case.cli:
        text = err.getvalue()
        lines = [ln for ln in text.splitlines() if 'error:' in ln]
        result.update(type='exit %s' % value, message=(lines[-1] if lines else text[-400:])[:600])
        result['clear'] = value == 2 and any(any(n in ln for n in case.needles) for ln in lines) \
            and 'Traceback' not in text + out.getvalue()
        return result
    result.update(type=None, message='no error: %s' % (repr(value)[:200],), clear=False)
    return result


def _truncate(path, fraction):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * fraction))


def _flip(path, offset, bit=0):
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def _data_offset(path, under=''):
    """Byte offset of the middle of the data of the largest (contiguous) dataset whose name starts with ``under``
    in an HDF5 file."""
    import h5py
    found = []
    with h5py.File(path, 'r') as f:
        def visit(name, node):
            if isinstance(node, h5py.Dataset) and node.id.get_offset() is not None and name.startswith(under):
                found.append((node.id.get_storage_size(), node.id.get_offset(), name))
        f.visititems(visit)
    size, offset, _name = max(found)
    return offset + size // 2


def _train_small_run(folder):
    """An in-process BlobData run of 30 steps with -LAST.param and -LAST.state.h5; returns its config."""
    cfg = write_train_config(folder, step_log=False, plot_on=False, n_steps=30, history_freq=[10])
    with _in_process_trainer(cfg) as t:
        with quiet():
            t.run()
    return cfg, t


def _fresh_copy(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def corrupt_cases(work, rng):
    """The bad inputs (a list of :class:`Case`), with their files made in ``work``."""
    import h5py
    from elektronn.cli import predict as predict_cli
    from elektronn.cli import train as train_cli
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    from elektronn.training.CNNData import CNNData
    from elektronn.training.traindata import Data
    from pipeline_helpers import PREDICTION_RUN, write_config
    cases = []
    cfg, trained = _train_small_run(os.path.join(work, 'small'))
    good_dir = save_dir_of(cfg)
    good_param = os.path.join(good_dir, SAVE_NAME + '-LAST.param')
    original = read_params(good_param)
    cnn = trained.cnn

    def param_copy(name):
        path = os.path.join(work, name)
        shutil.copyfile(good_param, path)
        return path

    def load_into_net(path):
        def run():
            cnn.loadParameters(path, strict=True)
            return layer_params(cnn._saveable_layers())
        return run

    # -- parameter files ---------------------------------------------------------------------------
    p = param_copy('truncated_half.param')
    _truncate(p, 0.5)
    cases.append(Case('param_truncated', 'loadParameters(%s), cut to half its size' % os.path.basename(p),
                      load_into_net(p), [os.path.basename(p)]))
    p = param_copy('truncated_empty.param')
    _truncate(p, 0)
    cases.append(Case('param_empty', 'loadParameters(%s), 0 bytes' % os.path.basename(p), load_into_net(p),
                      [os.path.basename(p)]))
    p = param_copy('flipped_data.param')
    _flip(p, _data_offset(p), 6)
    cases.append(Case('param_bitflip_data', 'loadParameters(%s), a bit flipped in the weights' % os.path.basename(p),
                      load_into_net(p), [os.path.basename(p)]))
    p = param_copy('flipped_signature.param')
    _flip(p, 3, 1)
    cases.append(Case('param_bitflip_signature', 'loadParameters(%s), a bit flipped in the HDF5 signature'
                      % os.path.basename(p), load_into_net(p), [os.path.basename(p)]))
    size = os.path.getsize(good_param)
    for k in range(6):
        offset = rng.randrange(size)
        p = param_copy('flipped_random%i.param' % k)
        _flip(p, offset, rng.randrange(8))
        cases.append(Case('param_bitflip_random%i' % k, 'loadParameters(%s), bit flipped at byte %i of %i'
                          % (os.path.basename(p), offset, size), load_into_net(p), [os.path.basename(p)],
                          accept_same=lambda v: same_params(v, original)))

    # -- --resume with a corrupt parameter file or state ----------------------------------------------
    def resumed_from_intact_copy(run_dir):
        # the resume took an intact copy of the parameters (e.g. the one in the state): the run goes on as saved
        def check(rc):
            end = os.path.join(run_dir, SAVE_NAME + '_end.param')
            return rc == 0 and same_params(_safe(read_params, end), named_params)
        return check

    def resume_case(name, what, corrupt, needle_file, intact_copy_ok=False):
        run_dir = _fresh_copy(good_dir, os.path.join(work, 'resume_' + name))
        corrupt(run_dir)
        end = os.path.join(run_dir, SAVE_NAME + '_end.param')
        if os.path.exists(end) and not name.startswith('param'):
            os.unlink(end)  # written anew by a resume that works
        cases.append(Case('resume_' + name, what, lambda: train_cli.main([run_dir, '--resume', '--gpu=false']),
                          [needle_file], cli=True,
                          accept_same=resumed_from_intact_copy(run_dir) if intact_copy_ok else None))

    state = SAVE_NAME + '-LAST.state.h5'
    named = _safe(last_state, good_dir)  # the parameter file the resume state names
    last = os.path.basename(named['params_file']) if isinstance(named, dict) else SAVE_NAME + '-LAST.param'
    named_params = read_params(os.path.join(good_dir, last))
    resume_case('param_truncated', 'elektronn-train --resume, %s (named by the state) cut to half' % last,
                lambda d: _truncate(os.path.join(d, last), 0.5), last, intact_copy_ok=True)
    resume_case('param_bitflip', 'elektronn-train --resume, a bit flipped in the weights of %s (named by the state)'
                % last, lambda d: _flip(os.path.join(d, last), _data_offset(os.path.join(d, last)), 6), last,
                intact_copy_ok=True)
    resume_case('state_truncated', 'elektronn-train --resume, %s cut to half' % state,
                lambda d: _truncate(os.path.join(d, state), 0.5), state)
    resume_case('state_empty', 'elektronn-train --resume, %s of 0 bytes' % state,
                lambda d: _truncate(os.path.join(d, state), 0), state)
    resume_case('state_bitflip_optimizer', 'elektronn-train --resume, a bit flipped in the optimiser state (momenta) '
                'of %s' % state, lambda d: _flip(os.path.join(d, state), _data_offset(os.path.join(d, state),
                                                                                      'optimizer'), 6), state)

    def flip_info(d):
        path = os.path.join(d, state)
        with open(path, 'rb') as f:
            data = f.read()
        at = data.find(b'"optimizer"')
        _flip(path, at + 1 if at >= 0 else len(data) // 3, 5)
    resume_case('state_bitflip_info', 'elektronn-train --resume, a bit flipped in the JSON record of %s' % state,
                flip_info, state)

    # -- elektronn-predict --params -----------------------------------------------------------------
    setup = setup_prediction(work)
    tiny = os.path.join(setup['run'], 'tiny-LAST.param')
    for name, corrupt in (('truncated', lambda q: _truncate(q, 0.5)),
                          ('bitflip', lambda q: _flip(q, _data_offset(q), 6))):
        q = os.path.join(work, 'predict_%s.param' % name)
        shutil.copyfile(tiny, q)
        corrupt(q)
        out = os.path.join(work, 'predict_%s.h5:prob' % name)
        cases.append(Case('predict_params_%s' % name, 'elektronn-predict --params %s (%s)' % (os.path.basename(q), name),
                          lambda q=q, out=out: predict_cli.main([setup['run'], setup['input'], out, '--params', q,
                                                                 '--gpu=false', '--block-shape', '30,30,10']),
                          [os.path.basename(q)], cli=True))
    bad_in = os.path.join(work, 'predict_input_truncated.h5')
    shutil.copyfile(setup['input'].rsplit(':', 1)[0], bad_in)
    _truncate(bad_in, 0.5)
    cases.append(Case('predict_input_truncated', 'elektronn-predict on %s:raw cut to half' % os.path.basename(bad_in),
                      lambda: predict_cli.main([setup['run'], bad_in + ':raw', os.path.join(work, 'pin.h5:prob'),
                                                '--gpu=false']), [os.path.basename(bad_in)], cli=True))

    # -- data cubes (CNNData through the trainer, and through elektronn-train) ---------------------------
    cube_dir = os.path.join(work, 'cubes')
    os.makedirs(cube_dir, exist_ok=True)
    rng_np = np.random.default_rng(3)
    raw_ok = rng_np.random((30, 30, 8)).astype(np.float32)
    lab_ok = (raw_ok > 0.5).astype(np.int16)

    def h5(name, **datasets):
        path = os.path.join(cube_dir, name)
        with h5py.File(path, 'w') as f:
            for k, v in datasets.items():
                f[k] = v
        return name

    def cube_config(tag, d_name, l_name, **values):
        folder = os.path.join(work, 'cube_' + tag)
        settings = dict(PREDICTION_RUN, d_files=[(d_name, 'raw')], l_files=[(l_name, 'lab')], data_path=cube_dir + '/',
                        label_path=cube_dir + '/')
        settings.update(values)
        return write_config(folder, base=settings)

    def load_cubes(cfg_path):
        def run():
            t = Trainer(Config(cfg_path, init_device=False))
            t.loadData()
            t.data.getbatch(**t.get_batch_kwargs)
            return 'loaded'
        return run

    def cube_case(name, what, d_name, l_name, needles, cli=False, **values):
        path = cube_config(name, d_name, l_name, **values)
        cases.append(Case('cubes_' + name, what, load_cubes(path), needles))
        if cli:
            cases.append(Case('train_cli_' + name, 'elektronn-train: ' + what,
                              lambda: train_cli.main([path, '--gpu=false']), needles, cli=True))

    h5('raw_ok.h5', raw=raw_ok)
    h5('lab_ok.h5', lab=lab_ok)
    trunc = h5('raw_truncated.h5', raw=raw_ok)
    _truncate(os.path.join(cube_dir, trunc), 0.5)
    cube_case('raw_truncated', 'd_files %s cut to half' % trunc, trunc, 'lab_ok.h5', [trunc], cli=True)
    trunc_l = h5('lab_truncated.h5', lab=lab_ok)
    _truncate(os.path.join(cube_dir, trunc_l), 0.6)
    cube_case('lab_truncated', 'l_files %s cut to 60%%' % trunc_l, 'raw_ok.h5', trunc_l, [trunc_l])
    nan = raw_ok.copy()
    nan[3, 4, 5] = np.nan
    cube_case('raw_nan', 'raw cube with one NaN', h5('raw_nan.h5', raw=nan), 'lab_ok.h5', ['raw_nan.h5'], cli=True)
    inf = raw_ok.copy()
    inf[7, 1, 2] = -np.inf
    cube_case('raw_inf', 'raw cube with one -Inf', h5('raw_inf.h5', raw=inf), 'lab_ok.h5', ['raw_inf.h5'])
    big = lab_ok.copy()
    big[2, 2, 2] = 5
    cube_case('label_above_n_lab', 'a label 5 with n_lab=2', 'raw_ok.h5', h5('lab_5.h5', lab=big), ['lab_5.h5'])
    frac = lab_ok.astype(np.float32)
    frac[1, 1, 1] = 0.5
    cube_case('label_fraction', 'a label 0.5 for classification', 'raw_ok.h5', h5('lab_frac.h5', lab=frac),
              ['lab_frac.h5'])
    cube_case('labels_all_ignored', 'every label -1 (ignored), n_lab=2', 'raw_ok.h5',
              h5('lab_ignored.h5', lab=np.full_like(lab_ok, -1)), ['lab_ignored.h5'])
    cube_case('labels_all_ignored_nlab_none', 'every label -1, n_lab=None', 'raw_ok.h5', 'lab_ignored.h5',
              ['lab_ignored.h5'], n_lab=None)
    cube_case('raw_empty', 'a raw cube of shape (0, 30, 8)', h5('raw_empty.h5', raw=np.zeros((0, 30, 8), np.float32)),
              'lab_ok.h5', ['raw_empty.h5'])
    cube_case('batch_size_absurd', 'batch_size = 10**9', 'raw_ok.h5', 'lab_ok.h5', ['batch_size'],
              batch_size=10 ** 9, monitor_batch_size=10 ** 9)

    def disk_nan():
        data = CNNData(patch_size=(5, 18, 18), stride=(1, 2, 2), offset=(1, 5, 5), n_dim=3, n_lab=2, seed=0)
        data.max_in_memory_bytes = 1000  # the cube stays in its file
        data.addDataFromFile(cube_dir, cube_dir, [('raw_nan_all.h5', 'raw')], [('lab_ok.h5', 'lab')])
        return data.getbatch(4)
    h5('raw_nan_all.h5', raw=np.full_like(raw_ok, np.nan))
    cases.append(Case('cubes_on_disk_nan', 'a cube read from its file (too large for memory) full of NaN', disk_nan,
                      ['raw_nan_all.h5']))

    # -- data classes ---------------------------------------------------------------------------------
    d = rng_np.random((20, 1, 6, 6)).astype(np.float32)
    lab = (rng_np.random(20) > 0.5).astype(np.int16)
    d_nan = d.copy()
    d_nan[4, 0, 1, 1] = np.nan
    cases.append(Case('data_class_nan', 'traindata.Data with a NaN in train_d',
                      lambda: Data(train_d=d_nan, train_l=lab, n_lab=2), ['train_d']))
    lab_big = lab.copy()
    lab_big[3] = 7
    cases.append(Case('data_class_label_range', 'traindata.Data with a label 7 and n_lab=2',
                      lambda: Data(train_d=d, train_l=lab_big, n_lab=2), ['train_l']))
    cases.append(Case('data_class_label_range_detected', 'traindata.Data with labels {0, 1, 7}, n_lab detected',
                      lambda: Data(train_d=d, train_l=lab_big), ['train_l']))
    v_nan = d[:5].copy()
    v_nan[0, 0, 0, 0] = np.inf
    cases.append(Case('data_class_valid_inf', 'traindata.Data with an Inf in valid_d',
                      lambda: Data(train_d=d, train_l=lab, valid_d=v_nan, valid_l=lab[:5], n_lab=2), ['valid_d']))

    # -- configs ------------------------------------------------------------------------------------
    def config_case(name, what, needle, **values):
        path = write_train_config(os.path.join(work, 'config_' + name), step_log=False, **values)
        cases.append(Case('config_' + name, what, lambda: Config(path, init_device=False, use_existing_dir=True,
                                                                 check_files=False), [needle]))
    config_case('batch_size_negative', 'batch_size = -1', 'batch_size', batch_size=-1)
    config_case('n_steps_str', "n_steps = '100'", 'n_steps', n_steps='100')
    config_case('desired_input_zero', 'desired_input = 0', 'desired_input', desired_input=0)
    config_case('filters_float', 'filters = [2.5]', 'filters', filters=[2.5])
    config_case('history_freq_negative', 'history_freq = [-5]', 'history_freq', history_freq=[-5])
    config_case('nof_filters_negative', 'nof_filters = [-4]', 'nof_filters', nof_filters=[-4])
    config_case('lr_negative', "SGD_params = {'LR': -1}", 'SGD_params', SGD_params={'LR': -1, 'momentum': 0.9})

    # -- the trainer with absurd sizes (the config accepts them) ------------------------------------------
    def trainer_case(name, what, needle, **values):
        path = write_train_config(os.path.join(work, 'trainer_' + name), step_log=False, plot_on=False, **values)

        def run():
            t = Trainer(Config(path, init_device=False))
            t.loadData()
            t.createNet()
            t.interactive = False
            return t.run()
        cases.append(Case('trainer_' + name, what, run, [needle]))
    trainer_case('desired_input_absurd', 'desired_input = 10**5 on 12x12 images', 'desired_input',
                 desired_input=10 ** 5, n_steps=2)
    trainer_case('nof_filters_absurd', 'nof_filters = [10**9]', 'nof_filters', nof_filters=[10 ** 9], n_steps=2)
    trainer_case('pool_absurd', 'pool = [10**6]', 'pool', pool=[10 ** 6], n_steps=2)
    trainer_case('MLP_layers_absurd', 'MLP_layers = [10**10]', 'MLP_layers', MLP_layers=[10 ** 10], n_steps=2)

    return cases


def corrupt_inputs(work, env=None, seed=0, log=print, only_cases=None):
    rng = random.Random(seed + 4)
    work = os.path.join(work, 'corrupt_inputs')
    os.makedirs(work, exist_ok=True)
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = corrupt_cases(work, rng)
        if only_cases is not None:
            cases = [c for c in cases if any(c.name.startswith(o) for o in only_cases)]
        results = []
        for case in cases:
            r = _judge(case)
            results.append(r)
            log('  %-34s %-5s %s: %s' % (case.name, 'ok' if r['clear'] else 'FAIL', r.get('type'),
                                         (r.get('message') or '')[:150].replace('\n', ' ')))
    finally:
        torch.set_num_threads(threads)
    failures = [r for r in results if not r['clear']]
    return dict(bad_inputs=len(results), clear_errors=len(results) - len(failures), failures=failures,
                cases=[dict(case=r['case'], type=r.get('type'), message=(r.get('message') or '')[:200])
                       for r in results if r['clear']])


# ------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------
def run_kind(kind, args, work, env, log):
    quick = args.quick
    if kind == 'kill_train':
        return kill_train(work, env, trials=args.kill_trials or (3 if quick else 30), seed=args.seed, quick=quick,
                          log=log)
    if kind == 'signals_train':
        if quick:
            return signals_train(work, env, optimizers=('SGD',), kinds=('sigint2', 'sigterm1'), per_kind=1,
                                 seed=args.seed, log=log, resumes=1)
        return signals_train(work, env, seed=args.seed, log=log)
    if kind == 'kill_predict':
        return kill_predict(work, env, trials=args.predict_trials or (2 if quick else 20), seed=args.seed, quick=quick,
                            log=log)
    if kind == 'disk_full':
        return disk_full(work, env, trials=1 if quick else 3, seed=args.seed, log=log)
    if kind == 'corrupt_inputs':
        return corrupt_inputs(work, env, seed=args.seed, log=log)
    raise ValueError(kind)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='a few trials of each kind (under a minute)')
    p.add_argument('--only', choices=KINDS, action='append', help='run only this kind (repeatable)')
    p.add_argument('--kill-trials', type=int, default=None, help='SIGKILLs of elektronn-train (default 30, quick 3)')
    p.add_argument('--predict-trials', type=int, default=None,
                   help='SIGKILLs of elektronn-predict (default 20, quick 2)')
    p.add_argument('--seed', type=int, default=0, help='seed of the random moments and corruptions')
    p.add_argument('--workdir', default=None, help='folder for the runs (default: a temporary one, removed)')
    p.add_argument('--keep', action='store_true', help='keep the temporary work folder')
    p.add_argument('--verbose', action='store_true', help='print every trial')
    args = p.parse_args(argv)
    from _pipeline_setup import emit
    work = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='elektronn-faults-'))
    os.makedirs(work, exist_ok=True)
    home = os.path.join(work, 'home')
    os.makedirs(home, exist_ok=True)
    os.environ['HOME'] = home  # in-process configs read no user config either
    env = child_env(home)
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if args.verbose else (lambda text: None)
    t_all = time.monotonic()
    try:
        for kind in (args.only or KINDS):
            t0 = time.monotonic()
            figure = run_kind(kind, args, work, env, log)
            emit(figure=kind, quick=args.quick, seed=args.seed, wall_seconds=round(time.monotonic() - t0, 1),
                 **figure)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print('total wall time %.1f s' % (time.monotonic() - t_all), file=sys.stderr)


if __name__ == '__main__':
    main()
