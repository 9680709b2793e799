"""Helpers for the pipeline tests: small config files for the synthetic data classes, process checks."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SYNTHETIC = os.path.join(HERE, 'synthetic_data.py')

#: A small img-scalar CNN on BlobData (12x12 images, 2 classes).
BLOB_CNN = dict(
    save_name='blob', data_class_name=(SYNTHETIC, 'BlobData'), data_load_kwargs={}, mode='img-scalar', n_dim=2,
    desired_input=12, filters=[3], pool=[2], nof_filters=[4], MLP_layers=[8], batch_size=10, monitor_batch_size=50,
    n_steps=60, max_runtime=600, history_freq=[20], n_lab=2, SGD_params=dict(LR=0.05, momentum=0.9),
)


def write_config(folder, name='cfg.py', base=BLOB_CNN, lines=(), **values):
    """Write a config file to ``folder`` from ``base`` updated with ``values``; ``save_path`` defaults to
    ``<folder>/run/``. Extra source ``lines`` are appended verbatim."""
    settings = dict(base)
    settings.setdefault('save_path', os.path.join(str(folder), 'run', ''))
    settings.update(values)
    os.makedirs(str(folder), exist_ok=True)
    path = os.path.join(str(folder), name)
    with open(path, 'w') as f:
        for key, value in settings.items():
            f.write('%s = %r\n' % (key, value))
        for line in lines:
            f.write(line + '\n')
    return path


def process_alive(pid):
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open('/proc/%i/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False
