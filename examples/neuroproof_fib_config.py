# ELEKTRONN example: an isotropic 3D network on a FIB-SEM volume.
#
# neuroproof_fib_sample2.h5 (Janelia FlyEM, Drosophila medulla, 10 nm isotropic voxels, CC BY 3.0)
# holds 'raw' and 'barrier' (1 = boundary between bodies) as (250, 250, 250) uint8 in (z, y, x) order:
# zchxy_order = True. The data is isotropic, so anisotropic_data = False: patches are transposed in
# all three axes, and the network looks equally far in x, y and z. The label volume has the size of
# the raw one; the border the network cannot predict is left out of training.
#
# z-slices 0-179 train, 180-249 validate (a region, the third element of each (file, key) entry).
#
# Set ELEKTRONN_SHARED_DATA to the folder holding the file (or edit data_path), then run
#
#     elektronn-train neuroproof_fib_config.py
#
# The settings follow the ISBI 2012 search (docs: 'Getting good results on your EM data'): the
# neuro 3D example's optimiser settings, bf16 where it is native, and test-time augmentation over
# all 16 flips and transposes of isotropic data at prediction time:
#
#     elektronn-predict ~/CNN_Training/3D/neuroproof_fib raw.h5:raw prob.h5:prob --layout zxy --pad-raw --tta

import os as _os
_folder = _os.path.join(_os.path.expanduser(_os.environ.get('ELEKTRONN_SHARED_DATA', '~/elektronn_data')), '')
del _os

### Pipeline setup ###
save_path = '~/CNN_Training/3D/'
plot_on = True
print_status = True
device = False
mixed_precision = 'auto'                # bf16 where native (measured: same accuracy, 2x steps)
param_save_h = 1.0
initial_prev_h = 0.1
prev_save_h = 0.2

### Paths and general ###
save_name = 'neuroproof_fib'
overwrite = True
save_path += save_name + '/'
param_file = None

### Network architecture ###
activation_func = 'relu'
batch_size = 1
dropout_rates = []
n_dim = 3
desired_input = [63, 63, 63]            # field of view 31 in every direction, output 9 x 9 x 9
filters = [[4, 4, 4], [3, 3, 3], [3, 3, 3], [3, 3, 3], [2, 2, 2]]
pool = [[2, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
nof_filters = [10, 20, 40, 40, 40]
pooling_mode = 'max'
MFP = []
target = 'nll'

### Data general ###
mode = 'img-img'
n_lab = 2
background_processes = 2

### Data images/CNN ###
data_path = _folder
label_path = _folder
d_files = [('neuroproof_fib_sample2.h5', 'raw', dict(z=(0, 180))),
           ('neuroproof_fib_sample2.h5', 'raw', dict(z=(180, 250)))]
l_files = [('neuroproof_fib_sample2.h5', 'barrier', dict(z=(0, 180))),
           ('neuroproof_fib_sample2.h5', 'barrier', dict(z=(180, 250)))]
zchxy_order = True
cube_prios = None
valid_cubes = [1]
example_ignore_threshold = 0.0
grey_augment_channels = [0]
use_example_weights = False
flip_data = True
anisotropic_data = False                # isotropic voxels: all axis orders are used
lazy_labels = False
warp_on = 0.7

### Data preview ###
preview_data_path = None
preview_kwargs = dict(export_class=1, max_z_pred=5)
del _folder

### Optimisation ###
n_steps = 10**12
max_runtime = 2 * 3600
history_freq = [500]
monitor_batch_size = 10
weight_decay = 0.0001
class_weights = None
label_prop_thresh = None
optimizer = 'SGD'
LR_decay = 0.993
LR_schedule = None
SGD_params = dict(LR=0.005, momentum=0.9)
