# ELEKTRONN example: MNIST digits with a small CNN and warping augmentation ('img-scalar').
#
# Run:  elektronn-train MNIST_CNN_warp_config.py [--gpu=auto]
# Recipe for about 0.5 % test error: train until the validation error plateaus, then press ctrl+c and
#     data.warp_on = False     (stop warping)
#     setlr 0.002              (smaller learning rate)
#     q                        (continue: fine-tuning)
# and finally, after another ctrl+c:  self.testModel('test')
# Every parameter not set here has its master default (see config_template.py).

### Pipeline setup ###
save_path = '~/CNN_Training/2D/'      # runs are collected here, each in a folder named save_name
save_name = 'MNIST_example_warp'
save_path += save_name + '/'
param_file = None                     # or a parameter file to start from

### Network architecture ###
activation_func = 'relu'
batch_size = 50
dropout_rates = None                  # no dropout; warping regularises
n_dim = 2
desired_input = 26                    # 28x28 digits, cropped to 26x26 by the shift augmentation
filters = [3, 3]                      # two conv layers with 3x3 filters
pool = [2, 2]                         # each followed by 2x2 max-pooling
nof_filters = [16, 32]                # feature maps per conv layer
MLP_layers = [300, 300]               # two fully connected layers; the 10-class output layer is added
target = 'nll'

### Data ###
mode = 'img-scalar'                   # images in, one class label out
n_lab = None                          # taken from the data (10)
background_processes = 3              # warping runs in 3 worker processes
data_class_name = 'MNISTData'         # elektronn.training.traindata.MNISTData
data_load_kwargs = dict(path=None, convert2image=True, warp_on=True, shift_augment=True)
data_batch_kwargs = dict()

### Optimisation ###
n_steps = 100000
max_runtime = 30 * 60                 # seconds of training (console time does not count)
history_freq = [100]                  # estimates, status line and plots every 100 steps
monitor_batch_size = 10000            # the estimates use the whole validation set
weight_decay = False
optimizer = 'SGD'
LR_decay = 0.99                       # LR multiplied by this after every 1000 steps
LR_schedule = None
SGD_params = dict(LR=0.02, momentum=0.9)
