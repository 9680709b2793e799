# ELEKTRONN example: the 3D neuro example on the embedded synthetic EM volume (no download).
#
# On first use the data set (3 anisotropic EM-like cubes with barrier labels and 2 preview cubes) is
# generated into $ELEKTRONN_HOME/synthetic_neuro (default ~/.ELEKTRONN/synthetic_neuro) when the
# training loads it, which takes about 20 seconds; later runs reuse it. Run
#
#     elektronn-train neuro_3d_synthetic_config.py
#
# The network is the one of neuro_3d_config.py, trained for 4.5 minutes (SGD with a higher learning
# rate than the original example's 0.005, so that the run shows results quickly): on 2 CPU cores the
# validation error falls from the all-background level (about 22 %, the share of membrane voxels)
# below 10 % within a minute and to about 4 % at the end (measured: 2600 steps, 4 min 57 s for the
# whole command on first use). Previews of the two preview cubes follow after 1.5 and 4.2 minutes.

from elektronn.data.synthetic import synthetic_neuro_folder
_synthetic = synthetic_neuro_folder()   # the folder only: reading this config generates nothing
del synthetic_neuro_folder

### Pipeline setup ###
save_path = '~/CNN_Training/3D/'
plot_on = True
print_status = True
device = False
param_save_h = 1.0
initial_prev_h = 0.025                  # a first preview after 1.5 minutes of training
prev_save_h = 0.045                     # and one more before the end

### Paths and general ###
save_name = 'neuro_3d_synthetic'
overwrite = True
save_path += save_name + '/'
param_file = None

### Network architecture (as neuro_3d_config.py) ###
activation_func = 'relu'
batch_size = 1
dropout_rates = []
n_dim = 3
desired_input = [127, 127, 7]
filters = [[4, 4, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [2, 2, 1]]
pool = [[2, 2, 1], [2, 2, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
nof_filters = [10, 20, 40, 40, 40]
pooling_mode = 'max'
MFP = []
target = 'nll'

### Data general ###
mode = 'img-img'
n_lab = 2
background_processes = 2

### Data images/CNN ###
data_path = _synthetic
label_path = _synthetic
d_files = [('raw_%i.h5' % i, 'raw') for i in range(3)]
l_files = [('barrier_int16_%i.h5' % i, 'lab') for i in range(3)]
cube_prios = None
valid_cubes = [2]
example_ignore_threshold = 0.0
grey_augment_channels = [0]
use_example_weights = False
flip_data = True
anisotropic_data = True
lazy_labels = False
warp_on = 0.7

### Data preview ###
preview_data_path = _synthetic + 'preview_cubes.h5'
preview_kwargs = dict(export_class=1, max_z_pred=5)
del _synthetic

### Optimisation ###
n_steps = 10**12
max_runtime = 270                       # seconds of training (+ about 30 s to start, 20 s more on first use)
history_freq = [100]
monitor_batch_size = 10
weight_decay = 0.0001
class_weights = None
label_prop_thresh = None
optimizer = 'SGD'
LR_decay = 0.993
LR_schedule = None
SGD_params = dict(LR=0.02, momentum=0.9)
