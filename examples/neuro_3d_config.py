# ELEKTRONN example: 3D neuron-membrane ("barrier") detection in anisotropic EM volumes.
#
# Data: the neuro example set (3 raw cubes raw_<i>.h5 with dataset 'raw', uint8 (350, 350, 250), and
# 3 barrier label cubes barrier_int16_<i>.h5 with dataset 'lab', int16 (150, 150, 150), all in
# (x, y, z) order, plus preview_cubes.h5). Point data_path, label_path and preview_data_path at the
# folder you unpacked it to, then run
#
#     elektronn-train neuro_3d_config.py [--gpu=auto|false|<int>]
#
# No data at hand? neuro_3d_synthetic_config.py trains the same network on a synthetic volume that
# is generated on first use.

### Pipeline setup ###
save_path = '~/CNN_Training/3D/'       # a folder named save_name is created in here
plot_on = True                          # PNG plots of the training progress
print_status = True                     # a status line at every history step
device = False                          # default GPU when --gpu is not given (False: CPU / default)
param_save_h = 1.0                      # hours between permanent parameter snapshots
initial_prev_h = 0.1                    # hours until the first preview prediction
prev_save_h = 0.2                       # hours between preview predictions

### Paths and general ###
save_name = 'neuro_3d'
overwrite = True                        # replace an existing save directory of this name
save_path += save_name + '/'
param_file = None                       # initialise the weights from this parameter file

### Network architecture (the output layer is added automatically) ###
activation_func = 'relu'
batch_size = 1                          # 25 x 25 x 3 output voxels per patch: enough for one step
dropout_rates = []
n_dim = 3
desired_input = [127, 127, 7]           # (x, y, z); the data is anisotropic: a wide xy view, few z-slices
filters = [[4, 4, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [2, 2, 1]]   # (x, y, z) per layer
pool = [[2, 2, 1], [2, 2, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
nof_filters = [10, 20, 40, 40, 40]
pooling_mode = 'max'
MFP = []                                # no max-fragment-pooling in training: labels are strided instead
target = 'nll'

### Data general ###
mode = 'img-img'
n_lab = 2                               # barrier and background
background_processes = 2                # make batches in 2 worker processes

### Data images/CNN ###
data_path = '~/neuro_data/'             # EDIT: folder with raw_0.h5 ... raw_2.h5
label_path = '~/neuro_data/'            # EDIT: folder with barrier_int16_0.h5 ... barrier_int16_2.h5
d_files = [('raw_%i.h5' % i, 'raw') for i in range(3)]
l_files = [('barrier_int16_%i.h5' % i, 'lab') for i in range(3)]
cube_prios = None                       # sample cubes in proportion to their label volume
valid_cubes = [2]                       # the last cube is used for validation only
example_ignore_threshold = 0.0
grey_augment_channels = [0]
use_example_weights = False
flip_data = True
anisotropic_data = True                 # z has a coarser resolution: it is never swapped with x or y
lazy_labels = False
warp_on = 0.7                           # 70 % of the patches are warped

### Data preview ###
preview_data_path = '~/neuro_data/preview_cubes.h5'   # EDIT
preview_kwargs = dict(export_class=1, max_z_pred=5)

### Optimisation ###
n_steps = 10**12
max_runtime = 2 * 3600                  # seconds
history_freq = [500]
monitor_batch_size = 10
weight_decay = 0.0001
class_weights = None
label_prop_thresh = None
optimizer = 'SGD'
LR_decay = 0.993
LR_schedule = None
SGD_params = dict(LR=0.005, momentum=0.9)
