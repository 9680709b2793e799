# ELEKTRONN example: a 2D network on the ISBI 2012 EM segmentation challenge stack.
#
# isbi2012_train.h5 (Cardona et al. 2010, ssTEM of the Drosophila larva VNC, 4 x 4 x 50 nm voxels,
# research use only) holds 'raw' and 'barrier' (1 = membrane) as (30, 512, 512) uint8 in
# (z, y, x) order: already the memory layout, hence zchxy_order = True (x and y being swapped does
# not matter: patches are transposed in x/y anyway). The label volume has the size of the raw one:
# the border that the network cannot predict (its offset) is left out of training.
#
# Slices 0-23 train, 24-29 validate: each (file, key) pair takes a third element that selects a
# region of the dataset, here along z. A 2D network trains on single sections of these regions and
# predicts a stack section by section.
#
# Set ELEKTRONN_SHARED_DATA to the folder holding the file (or edit data_path), then run
#
#     elektronn-train isbi2012_config.py
#
# Chosen by a measured search on sections 24-29 (docs: 'Getting good results on your EM data'),
# at a budget of 20 CPU-minutes: the sections are 12.5 times thicker than the pixels, so a 2D
# network, which makes 2-4 times the training steps of the 3D one in the same time, is better at
# every score; three 2 x 2 poolings give it a field of view of 63 x 63 pixels; bf16 where the CPU
# or GPU computes it natively (twice the steps again, see docs/precision.rst). Predict with
# test-time augmentation:
#
#     elektronn-predict ~/CNN_Training/2D/isbi2012 raw.h5:raw prob.h5:prob --layout zxy --pad-raw --tta

import os as _os
_folder = _os.path.join(_os.path.expanduser(_os.environ.get('ELEKTRONN_SHARED_DATA', '~/elektronn_data')), '')
del _os

### Pipeline setup ###
save_path = '~/CNN_Training/2D/'
plot_on = True
print_status = True
device = False
mixed_precision = 'auto'                # bf16 where native (measured: same accuracy, 2x steps)
param_save_h = 1.0
initial_prev_h = 0.1
prev_save_h = 0.2

### Paths and general ###
save_name = 'isbi2012'
overwrite = True
save_path += save_name + '/'
param_file = None

### Network architecture (2D; field of view 63 x 63 pixels) ###
activation_func = 'relu'
batch_size = 1
dropout_rates = []
n_dim = 2
desired_input = [255, 255]
filters = [4, 3, 3, 3, 3, 2]
pool = [2, 2, 2, 1, 1, 1]
nof_filters = [10, 20, 40, 40, 40, 40]
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
d_files = [('isbi2012_train.h5', 'raw', dict(z=(0, 24))), ('isbi2012_train.h5', 'raw', dict(z=(24, 30)))]
l_files = [('isbi2012_train.h5', 'barrier', dict(z=(0, 24))), ('isbi2012_train.h5', 'barrier', dict(z=(24, 30)))]
zchxy_order = True
cube_prios = None
valid_cubes = [1]
example_ignore_threshold = 0.0
grey_augment_channels = [0]
use_example_weights = False
flip_data = True
anisotropic_data = True                 # 50 nm sections, 4 nm pixels (for 3D networks; 2D ones flip in x/y)
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
