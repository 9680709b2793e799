# ELEKTRONN example: MNIST digits as flat vectors with a multi-layer perceptron ('vect-scalar').
#
# Run:  elektronn-train MNIST_MLP_config.py [--gpu=auto]
# The same recipe as MNIST_CNN_warp_config.py applies (ctrl+c, data.warp_on = False, setlr 0.002, q).
# Every parameter not set here has its master default (see config_template.py).

### Pipeline setup ###
save_path = '~/CNN_Training/MLP/'
save_name = 'MNIST_MLP_warp'
save_path += save_name + '/'
param_file = None

### Network architecture ###
activation_func = 'relu'
batch_size = 50
dropout_rates = None
MLP_layers = [300, 300]               # the 10-class output layer is added automatically
target = 'nll'

### Data ###
mode = 'vect-scalar'                  # feature vectors in, one class label out
n_lab = None
background_processes = 3
data_class_name = 'MNISTData'
data_load_kwargs = dict(path=None, convert2image=False, warp_on=True, shift_augment=True)
data_batch_kwargs = dict()

### Optimisation ###
n_steps = 100000
max_runtime = 30 * 60
history_freq = [100]
monitor_batch_size = 10000
weight_decay = False
optimizer = 'SGD'
LR_decay = 0.99
LR_schedule = None
SGD_params = dict(LR=0.02, momentum=0.9)
