"""The resume state of a training run: the file ``<save_name>-LAST.state.h5`` that ``--resume`` continues from.

* :data:`STATE_FORMAT` and :class:`StateFileError` (a state that cannot be used);
* the loop variables a state holds;
* :class:`ResumeStateMixin`: the :class:`~elektronn.training.trainer.Trainer` methods that write
  (``saveState``), read and check (``resume``) the state, and gather and restore every rank's
  random states under distributed training.

A state is one HDF5 file, written atomically: a copy of the parameter file, optimiser states, loop
variables, learning rates, histories and random states, with a SHA-256 checksum of its content
(a damaged file is one clear :class:`StateFileError`, never wrong weights).
"""
import contextlib
import hashlib
import json
import logging
import os
import random

import numpy as np
import torch

from elektronn.utils import atomic_path, pprinttime, sha256_file as _sha256

logger = logging.getLogger(__name__)

__all__ = ['STATE_FORMAT', 'STATE_VERSION', 'StateFileError', 'ResumeStateMixin']

#: The ``format`` attribute of a resume state file.
STATE_FORMAT = 'ELEKTRONN training state'
#: The newest state version this code reads (and the one it writes).
STATE_VERSION = 1

#: Loop variables (saved for --resume) and their values at the start of a run.
_LOOP_DEFAULTS = dict(step=0, t_passed=0.0, nll_ema=0.65, t_pt=2.0, t_pi=2.0, last_save_t=0.0, save_time=None,
                      last_prev_t=None, prev_number=None, schedule_pos=0, nll=0.0, train_nll=0.0, valid_nll=0.0,
                      train_error=0.0, valid_error=0.0, nll_gain=0.0, batch_char=0.0)


class _LoopState:
    def __init__(self, **values):
        self.__dict__.update(_LOOP_DEFAULTS)
        self.__dict__.update(values)

    def to_dict(self):
        return {k: getattr(self, k) for k in _LOOP_DEFAULTS}


class StateFileError(ValueError):
    """A resume state that cannot be used: damaged, incomplete or not a state (the message names it)."""


@contextlib.contextmanager
def _damaged_state(path):
    """Report a state whose parts are missing or unreadable as one :class:`StateFileError` naming the file."""
    try:
        yield
    except (StateFileError, FileNotFoundError):
        raise
    except (OSError, KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise StateFileError('the resume state %s is damaged or incomplete (%s: %s); start afresh from a parameter '
                             'file of the run (param_file = ...)' % (path, type(e).__name__, e)) from None


def _state_digest(f):
    """SHA-256 of everything in an open state file but this checksum: attributes and datasets, in name order."""
    import h5py
    digest = hashlib.sha256()

    def add(name, node):
        digest.update(name.encode())
        for key in sorted(node.attrs):
            if key != 'content_sha256':
                digest.update(key.encode() + repr(node.attrs[key]).encode())
        if isinstance(node, h5py.Dataset):
            digest.update(np.ascontiguousarray(node[()]).tobytes())
    add('/', f)
    names = []
    f.visit(names.append)
    for name in sorted(names):
        add(name, f[name])
    return digest.hexdigest()


def _cuda_rng_states():
    """The CUDA generators' states, one row per device, or ``None`` while CUDA is not initialised
    (reading them would initialise it)."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return np.stack([state.numpy() for state in torch.cuda.get_rng_state_all()])


def _restore_cuda_rng(states):
    """Restore the CUDA generators from :func:`_cuda_rng_states` rows, with a note where they cannot
    all be restored (so that dropout masks will not continue as in the saved run)."""
    n_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    tensors = [torch.from_numpy(np.ascontiguousarray(row)) for row in states]
    if n_devices == len(tensors):
        torch.cuda.set_rng_state_all(tensors)
        return
    restored = min(n_devices, len(tensors))
    logger.warning('Note: the resume state holds the CUDA random generator states of %i GPU(s), this machine has %i: '
                   'the first %i restored; dropout masks on the other GPUs do not continue as in the saved run',
                   len(tensors), n_devices, restored)
    for index, state in enumerate(tensors[:restored]):
        torch.cuda.set_rng_state(state, device=index)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError('%r is not JSON serialisable' % (value,))


class ResumeStateMixin:
    """The :class:`~elektronn.training.trainer.Trainer` methods that write and read the resume state."""

    def _lrs(self):
        lrs = {}
        for mode in set(self.cnn.optimizer_state()) | {'SGD', 'Adam'}:
            try:
                lr = self.cnn.getLR(mode)
            except (ValueError, AttributeError):
                continue
            if lr is not None:
                lrs[mode] = float(lr)
        return lrs

    def saveState(self, params, path=None, ranks=None):
        """Write everything ``resume`` needs (HDF5, atomically): a copy of the parameter file ``params``,
        optimiser states, loop variables, learning rates, schedule position, histories and RNG states
        (``ranks``: under DDP every rank's, from ``_gatherRandomStates``).

        The state holds its own copy of the parameters, so that parameters and optimiser state are
        of one step by construction: a crash between writing ``params`` and the state leaves the
        previous state whole, and resuming takes its parameters, not the newer file."""
        import h5py
        if path is None:
            self.config.prepare_save_dir()
            path = self._file('-LAST.state.h5')
        data_rng = getattr(self.data, 'rng', None)
        np_state = np.random.get_state()
        info = dict(loop=self.state.to_dict(), optimizer=self.config.optimizer,
                    history_freq=int(self.config.history_freq[0]), lrs=self._lrs(),
                    momentum=float(self.cnn.SGD_momentum), weight_decay=float(self.cnn.global_weightdecay),
                    seed_entropy=self.seed_seq.entropy, seeds_spawned=self.seed_seq.n_children_spawned,
                    params_file=os.path.basename(params),
                    loss_scaler=self.cnn.loss_scaler.state_dict() if self.cnn.loss_scaler is not None else None,
                    params_sha256=_sha256(params) if os.path.exists(params) else None,
                    python_random=random.getstate(),
                    data_rng=data_rng.bit_generator.state if isinstance(data_rng, np.random.Generator) else None,
                    numpy_global=[np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])])
        with atomic_path(path) as tmp:
            with h5py.File(tmp, 'w') as f:
                f.attrs['format'] = STATE_FORMAT
                f.attrs['format_version'] = STATE_VERSION
                f.attrs['info'] = json.dumps(info, default=_json_default)
                if ranks is not None:
                    f.attrs['ranks'] = json.dumps(ranks, default=_json_default)
                for name, rows in (('history', self.history), ('timeline', self.timeline), ('errors', self.errors),
                                   ('CG_timeline', self.CG_timeline), ('segmentation', self.segmentation)):
                    f.create_dataset(name, data=np.asarray(rows, dtype=np.float64))
                if os.path.exists(params):  # the parameters travel inside the state: one file, one step
                    with open(params, 'rb') as pf:
                        f.create_dataset('params_file', data=np.frombuffer(pf.read(), np.uint8))
                f.create_dataset('torch_rng', data=torch.get_rng_state().numpy())
                cuda_rng = _cuda_rng_states()
                if cuda_rng is not None:
                    f.create_dataset('cuda_rng', data=cuda_rng)
                f.create_dataset('numpy_global_key', data=np_state[1])
                group = f.create_group('optimizer')
                for name, state in self.cnn.optimizer_state().items():
                    g = group.create_group(name)
                    scalars = {}
                    for key, value in state.items():
                        if isinstance(value, list):
                            sub = g.create_group(key)
                            for k, arr in enumerate(value):
                                sub.create_dataset('%05d' % k, data=np.asarray(arr))
                        else:
                            scalars[key] = value
                    g.attrs['scalars'] = json.dumps(scalars, default=_json_default)
                f.attrs['content_sha256'] = _state_digest(f)

    def resume(self, path=None):
        """Continue a run from its save directory: parameters (``-LAST.param``, strict), optimiser
        states, step, learning rates, schedule position, histories and RNG states.

        Raises:
            FileNotFoundError: the save directory holds no resume state.
            StateFileError: (a ``ValueError``) the state is damaged or incomplete.
            ValueError: the state does not fit this network.
        """
        import h5py
        path = path or self._file('-LAST.state.h5')
        if not os.path.exists(path):
            raise FileNotFoundError('no resume state %s in the save directory; a run writes it at every history '
                                    'step and when it stops' % path)
        try:
            f = h5py.File(path, 'r')
        except OSError as e:
            raise StateFileError('the resume state %s cannot be read: it is damaged or incomplete (%s); start afresh '
                                 'from a parameter file of the run (param_file = ...)' % (path, e)) from None
        with f, _damaged_state(path):
            if f.attrs.get('format') != STATE_FORMAT:
                raise StateFileError('%s is not an ELEKTRONN training state' % path)
            if int(f.attrs.get('format_version', 0)) > STATE_VERSION:
                raise StateFileError('%s was written by a newer ELEKTRONN (state version %s)'
                                     % (path, f.attrs.get('format_version')))
            if 'content_sha256' in f.attrs and f.attrs['content_sha256'] != _state_digest(f):
                raise StateFileError('the resume state %s is damaged: its content does not match its checksum; start '
                                     'afresh from a parameter file of the run (param_file = ...)' % path)
            info = json.loads(f.attrs['info'])
            own_params = f['params_file'][()].tobytes() if 'params_file' in f else None  # older states: none
            ranks = json.loads(f.attrs['ranks']) if 'ranks' in f.attrs else None  # DDP runs only
            arrays = {name: np.asarray(f[name]) for name in ('history', 'timeline', 'errors', 'CG_timeline')}
            segmentation = np.asarray(f['segmentation']) if 'segmentation' in f else np.zeros((0, 7))  # older
            torch_rng = np.asarray(f['torch_rng'])
            cuda_rng = np.asarray(f['cuda_rng']) if 'cuda_rng' in f else None  # older states: none
            np_key = np.asarray(f['numpy_global_key'])
            optimizer = {}
            for name, g in f['optimizer'].items():
                state = json.loads(g.attrs['scalars'])
                for key, sub in g.items():
                    state[key] = [np.asarray(sub[k]) for k in sorted(sub)]
                optimizer[name] = state
        params = os.path.join(os.path.dirname(path), info['params_file'])
        cnn = self.cnn
        self._load_state_params(cnn, path, params, own_params, info.get('params_sha256'), info['loop'].get('step'))
        cnn.load_optimizer_state(optimizer)
        if info.get('loss_scaler') is not None and cnn.loss_scaler is not None:  # fp16 runs
            cnn.loss_scaler.load_state_dict(info['loss_scaler'])
        for mode, lr in info['lrs'].items():
            cnn.setLR(lr, mode=mode)
        cnn.setSGDMomentum(info['momentum'])
        cnn.setWeightDecay(info['weight_decay'])
        self.config.optimizer = info['optimizer']
        self.config.history_freq[0] = info['history_freq']
        self.state = _LoopState(**info['loop'])
        self.config.use_existing_dir = True  # the run continues in its directory: run() must not move it aside
        self.history, self.timeline, self.errors, self.CG_timeline = (
            [list(r) for r in arrays[n]] for n in ('history', 'timeline', 'errors', 'CG_timeline'))
        self.segmentation = [list(r) for r in segmentation] if segmentation.ndim == 2 else []
        cnn.CG_timeline = list(self.CG_timeline)
        torch.set_rng_state(torch.from_numpy(torch_rng))
        if cuda_rng is not None:
            _restore_cuda_rng(cuda_rng)
        name, pos, has_gauss, gauss = info['numpy_global']
        np.random.set_state((name, np_key, pos, has_gauss, gauss))
        version, internal, gauss_next = info['python_random']
        random.setstate((version, tuple(internal), gauss_next))
        if info['data_rng'] is not None and isinstance(getattr(self.data, 'rng', None), np.random.Generator):
            self.data.rng.bit_generator.state = info['data_rng']
        self.seed_seq = np.random.SeedSequence(info['seed_entropy'], n_children_spawned=info['seeds_spawned'])
        if ranks is not None or self.dist.active:
            self._restoreRandomStates(ranks)
        logger.info('Resuming %s at step %i (%s of training, LR %s)', self.config.save_name, self.state.step,
                    pprinttime(self.state.t_passed), info['lrs'])

    @staticmethod
    def _load_state_params(cnn, state_path, params, own_params, sha256, step):
        """Load the parameters of a resume state: its own copy, or (older states) the file it names, which
        must be the file it was saved with."""
        if own_params is not None:
            if os.path.exists(params) and _sha256(params) != hashlib.sha256(own_params).hexdigest():
                logger.info('Note: %s is from another step than the resume state %s (the run stopped between writing '
                            'the two); resuming from the parameters of step %s stored in the state',
                            params, state_path, step)
            import tempfile
            with tempfile.TemporaryDirectory(prefix='elektronn-resume-') as folder:
                copy = os.path.join(folder, os.path.basename(params))
                with open(copy, 'wb') as f:
                    f.write(own_params)
                cnn.loadParameters(copy, strict=True)
            return
        if not os.path.exists(params):
            raise FileNotFoundError('the resume state %s names the parameter file %s, which does not exist'
                                    % (state_path, params))
        if sha256 and _sha256(params) != sha256:
            raise ValueError('%s and the resume state %s are from different steps (the run stopped between writing '
                             'the two); resuming would pair parameters with another step\'s optimiser state. Start '
                             'afresh from a parameter file (param_file = ...) such as %s, or resume a run saved by '
                             'this version (its states hold their parameters)' % (params, state_path, params))
        cnn.loadParameters(params, strict=True)

    def _gatherRandomStates(self):
        """DDP: every rank's random states (torch, CUDA, NumPy, Python, the data's generator, the seed
        sequence), gathered on rank 0 for the resume state (``None`` elsewhere and in a single process)."""
        if not self.dist.active:
            return None
        data_rng = getattr(self.data, 'rng', None)
        np_state = np.random.get_state()
        mine = dict(torch=torch.get_rng_state().numpy(), cuda=_cuda_rng_states(), python=random.getstate(),
                    numpy=[np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                    data=data_rng.bit_generator.state if isinstance(data_rng, np.random.Generator) else None,
                    seed=[self.seed_seq.entropy, list(self.seed_seq.spawn_key), self.seed_seq.n_children_spawned])
        return self.dist.gather(mine)

    def _restoreRandomStates(self, ranks):
        """Resume: this rank's random states from the state's per-rank list (``None``: a single-process
        run), with a note where they cannot be restored exactly (another number of processes)."""
        n_saved, world = (len(ranks) if ranks is not None else 1), self.dist.world_size
        if n_saved != world:
            logger.warning('Note: the run was trained by %i process(es) and is resumed by %i: %s', n_saved, world, (
                "every rank starts its data and worker random streams afresh from the run's seed" if world > 1
                else "rank 0's random states are restored, the other ranks' examples are not drawn"))
            return
        if world == 1:
            return
        state = ranks[self.dist.rank]
        torch.set_rng_state(torch.from_numpy(np.asarray(state['torch'], dtype=np.uint8)))
        if state['cuda'] is not None:
            _restore_cuda_rng(np.asarray(state['cuda'], dtype=np.uint8))
        name, key, pos, has_gauss, gauss = state['numpy']
        np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state['python']
        random.setstate((version, tuple(internal), gauss_next))
        if state['data'] is not None and isinstance(getattr(self.data, 'rng', None), np.random.Generator):
            self.data.rng.bit_generator.state = state['data']
        entropy, spawn_key, spawned = state['seed']
        self.seed_seq = np.random.SeedSequence(entropy, spawn_key=tuple(spawn_key), n_children_spawned=spawned)
        self._rank_seeded = True  # _setupDistributed must not reseed
        logger.info('Restored the random states of all %i ranks', world)

    def _saved_step(self):
        """The step of the resume state in the save directory, or ``'none'``."""
        import h5py
        try:
            with h5py.File(self._file('-LAST.state.h5'), 'r') as f:
                return json.loads(f.attrs['info'])['loop']['step']
        except (OSError, KeyError, ValueError):
            return 'none'
