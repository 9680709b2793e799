# ELEKTRONN config template: every parameter with its master default.
# GENERATED from elektronn/training/config.py (MASTER_PARAMS); do not edit by hand, regenerate with
#     python -m elektronn.training.config --template > examples/config_template.py
# Copy it as a starting point for a run file, or as ~/.elektronn.config for your own defaults.
# (*) marks important parameters, ($) ones only needed for special cases.
# Shapes are given in (x, y) / (x, y, z) order.

### Pipeline setup ###
# (*) Save directory of the run, used verbatim: config files append the run name themselves
# (save_path += save_name + '/'). When no file sets it: '~/CNN_Training/<save_name>/'.
save_path = '~/CNN_Training/'
# Plot the training progress (PNG files in the save directory) at every history step.
plot_on = True
# Print a status line at every history step.
print_status = True
# Compute precision of training: False (float32, as ELEKTRONN 1.x), 'bf16' or 'fp16' (autocast of
# the forward and backward pass; parameters, optimiser states and the loss stay float32; fp16 with
# loss scaling; CG and LBFGS steps in float32). Where the device has no native support (CPUs
# without AVX512_BF16/AMX, GPUs below compute capability 8.0 for bf16) training falls back to
# float32 with a warning. 'auto': bf16 where it is native, else float32 without a warning (the
# recommended EM configs use it).
mixed_precision = False
# Also write the history values (losses, errors, LR, step times, segmentation scores) and the
# preview images to <save_path>/tensorboard/ for TensorBoard (needs the tensorboard package; rank 0
# of a distributed run).
tensorboard = False
# Device when elektronn-train gets no --gpu: False (CPU), 'auto' (a free GPU or the CPU) or a GPU
# index.
device = False
# Random seed: None (fresh entropy for every run) or an integer >= 0 from which the initial
# weights, the data sampling, augmentation, dropout and the streams of the background processes
# follow. Without background_processes two CPU runs with the same seed are bit-identical; with them
# each worker draws the same batches, but which worker delivers the next batch depends on timing.
seed = None
# PyTorch threads for training on the CPU: None (the cores minus the background processes, at least
# 1) or a number >= 1.
torch_threads = None
# Hours between permanent parameter snapshots (<save_name>-<hours>h.param).
param_save_h = 1.0
# Hours until the first preview prediction.
initial_prev_h = 1.0
# Hours between preview predictions.
prev_save_h = 3.0

### Paths and general ###
# (*) Name of the run: folder name and prefix of every file it writes.
save_name = 'Test'
save_path += save_name + '/'
# Start afresh in the save directory: an earlier run there is moved aside to
# <save_path>.old-<date>-<time>/ (True), or the run stops with an error (False). Nothing is
# deleted.
overwrite = True
# Parameter file to initialise the weights from (adaptive loading: matching layers are loaded,
# differing shapes are fitted), or None.
param_file = None

### Network architecture (the output layer with n_lab outputs is added automatically) ###
# Activation of the conv and MLP layers: one of 'relu', 'tanh', 'sigmoid', 'abs', 'linear', 'maxout
# <k>' for all, or a list with one per layer.
activation_func = 'relu'
# (*) Examples (patches) per update step.
batch_size = 1
# (*) Dropout rate per layer (conv + MLP), one rate for all, or []/None for no dropout. The output
# layer never has dropout.
dropout_rates = []
# (*) 2 or 3 spatial dimensions of the CNN (ignored for 'vect-scalar').
n_dim = 2
# (*) Wanted input patch size: an int or an (x, y)/(x, y, z) tuple; the nearest valid size is used.
desired_input = 100
# (*) Filter size per conv layer: ints or (x, y)/(x, y, z) tuples.
filters = []
# (*) Max-pooling factor per conv layer: ints or (x, y)/(x, y, z) tuples.
pool = []
# (*) Number of feature maps per conv layer.
nof_filters = []
# ($) Pooling function: 'max' or 'maxabs', for all or per conv layer.
pooling_mode = 'max'
# (*) Max-fragment-pooling per conv layer (0/1), or True/False for all.
MFP = []
# ($) A recurrent layer after the conv layers: dict(n_hid=..., activation_func='tanh',
# iterations=None), or None.
rnn_layer_kwargs = None
# (*) Units of the fully connected layers after the conv layers.
MLP_layers = []
# Loss: 'nll', 'regression', 'nll_mutiple_binary', 'nll_weak', 'affinity', 'malis'.
target = 'nll'

### Data: image cubes for CNNData (ignored in mode 'vect-scalar' and with a data class) ###
# (*) Folder of the raw data files (file names are appended to it).
data_path = '/'
# (*) Folder of the label files.
label_path = '/'
# (*) Raw data cubes: list of (file name, dataset key), HDF5 (.h5) or Zarr (.zarr), optionally with
# a region as third element, e.g. dict(z=(0, 24)).
d_files = []
# (*) Label cubes: list of (file name, dataset key), HDF5 or Zarr, in the order of d_files.
l_files = []
# Relative sampling weights of the training cubes, or None (proportional to the label cube size).
cube_prios = None
# Indices (into d_files) of the cubes used for validation.
valid_cubes = []
# Discard a patch whose fraction of ignored (negative) labels exceeds this.
example_ignore_threshold = 0.0
# (*) Channels that get random grey-value augmentation; [] disables it.
grey_augment_channels = [0]
# ($) Weight the examples (boosting-like; the weights come from the last input channel).
use_example_weights = False
# Random mirroring and x/y transposition of patches.
flip_data = True
# (*) z is the coarse axis: 2D patches only from xy-slices, 3D flips never swap z with x/y.
anisotropic_data = True
# ($) Train with lazy labels (per-cube 'info' masks).
lazy_labels = False
# Warping augmentation: True, or the fraction of patches to warp (CPU-heavy, use
# background_processes).
warp_on = False
# 'img-scalar' only, when the images do not fit a valid input size: 'crop', 'keep' (next smaller
# size), '0-pad', 'mirror', 'c-pad' (next larger size; c-pad: the border mean) or 'reject'.
border_mode = 'crop'
# 'standardise' (zero mean, unit std over all pixels) or None.
pre_process = None
# The files are stored in (z, (ch,) x, y) order instead of ((ch,) x, y, z).
zchxy_order = False
# 2D: mirror only along y (e.g. handwriting, upright scenes).
upright_x = False
# Downsample data and labels in x and y by this integer factor when loading, or False.
downsample_xy = False

### Data: previews (only 'img-img') ###
# HDF5 file or Zarr store with one or more raw cubes ((ch,) x, y, z), values 0-255, to predict
# previews on, or None.
preview_data_path = None
# Preview settings: export_class (int, list or 'all'), max_z_pred (number of z-slices).
preview_kwargs = {'export_class': 1, 'max_z_pred': 5}

### Data: common ###
# (*) Kind of data and labels: 'img-img' (dense labels), 'img-scalar' (one label per image) or
# 'vect-scalar' (feature vectors).
mode = 'img-img'
# (*) Number of classes (outputs), or None to detect it from the labels.
n_lab = None
# Prepare batches in background processes: False, True (2 processes) or the number of processes.
background_processes = False

### Data: alternative data classes (e.g. MNIST; required for vect-scalar) ###
# A data class instead of CNNData: a class name in elektronn.training.traindata (e.g. 'MNISTData')
# or a (path to a .py file, class name) pair.
data_class_name = None
# Keyword arguments for the data class constructor.
data_load_kwargs = {}
# Extra keyword arguments of getbatch for training batches (batch_size is added automatically).
data_batch_kwargs = {}

### Optimisation ###
# (*) Number of update steps.
n_steps = 1000000000000
# (*) Maximal training time in seconds (console time does not count).
max_runtime = 86400
# (*) Steps between history steps (estimates, status line, plots, -LAST.param), as a one-element
# list so the console can change it; [0] disables them.
history_freq = [500]
# (*) Examples for the train/valid estimates (rounded down to a multiple of batch_size).
monitor_batch_size = 10
# 'img-img' only: at every history step predict the valid cubes densely, segment them (seeded
# watershed, or agglomeration of affinities) and score the segmentation (Rand error, VOI
# split/merge: history CSV, log, <save_name>.Segmentation.png). None/False: off; True: the
# defaults; or a dict of elektronn.segmentation.Segmenter settings (threshold, min_seed_distance,
# min_size, two_d, merge_threshold) plus channel (the boundary class, default 1) and every
# (evaluate every n-th history step). Costs a dense prediction per history step (the seconds are in
# the status line).
valid_segmentation_metrics = None
# ($) L2 weight decay coefficient, or False (0).
weight_decay = False
# ($) Weight per class in the loss (not normalised), or None.
class_weights = None
# ($) Label propagation: train unlabelled (-1) positions on predictions more certain than this
# threshold in (0.5, 1), or None.
label_prop_thresh = None
# ($) Optimiser: 'SGD', 'CG', 'RPROP', 'LBFGS', 'Adam'.
optimizer = 'SGD'
# (*) Factor applied to the learning rate after every 1000 steps.
LR_decay = 0.993
# (*) List of (step, learning rate): set the LR at these steps (independent of the decay), or None.
LR_schedule = None
# Distributed training (torchrun): multiply the learning rates (and LR_schedule) by the number of
# processes (linear scaling rule: the global batch is batch_size times the number of processes). No
# effect in a single process.
lr_scale_with_world_size = False

### Optimiser hyper-parameters ###
# (*) SGD: initial learning rate and momentum.
SGD_params = {'LR': 0.001, 'momentum': 0.9}
# ($) Kept for old config files; no optimiser uses it.
SSGD_params = {'LR': 0.01, 'momentum': 0.9, 'var_momentum': 0.9, 'var_cuttoff': 3.0}
# ($) RPROP: step-size penalty and gain, initial step size.
RPROP_params = {'penalty': 0.35, 'gain': 0.2, 'beta': 0.7, 'initial_update_size': 0.0001}
# ($) Adam: learning rate, moment decays and epsilon.
Adam_params = {'LR': 0.001, 'beta1': 0.9, 'beta2': 0.999, 'epsilon': 1e-08}
# ($) CG: line searches per batch, Armijo constant, step shrink factor, largest and smallest step.
CG_params = {'n_steps': 4, 'alpha': 0.35, 'beta': 0.75, 'max_step': 0.02, 'min_step': 8e-05}
# ($) L-BFGS (scipy): function evaluations, iterations, memory, tolerances, verbosity.
LBFGS_params = {'maxfun': 40, 'maxiter': 4, 'm': 10, 'factr': 100.0, 'pgtol': 1e-09, 'iprint': -1}
