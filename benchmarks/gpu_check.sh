#!/usr/bin/env bash
# Every GPU figure of ELEKTRONN in one run of under 8 minutes, for a machine with a CUDA GPU.
#
# Steps, each with its own timeout inside one time budget (GPU_CHECK_BUDGET_S, default 450 s):
#   nvidia_smi          the GPU, driver, PyTorch/CUDA/cuDNN versions
#   install             this checkout into the machine's Python without touching torch:
#                       missing requirements of '.[test]' from the wheels in .whl/ (see
#                       --fetch-wheels) or, where a package index is reachable, from it;
#                       then 'pip install --no-deps -e .' (where that fails, the checkout is
#                       still used: it is on PYTHONPATH in any case)
#   gpu_auto            --gpu=auto (elektronn.net.device.initGPU('auto')) must choose a CUDA device
#   bench_net_cuda      training steps/s of the MNIST and neuro 3D example nets, fp32, ELEKTRONN
#                       vs. the plain PyTorch reference, both on the GPU (bench_net.py --device cuda)
#   bench_predict_cuda  MFP predictDense voxels/s vs. the plain dilated reference on the GPU,
#                       (64, 512, 512) volume, fast paths only (bench_predict.py --device cuda)
#   cuda_tests          pytest -m cuda (the log is cuda_tests.log)
#   [bf16/fp16 figures: later issues add their steps where the script says so]
#   bench_net_cpu       optional: the same bench_net on the CPU with all cores, when time is left
#
# The benchmarks run before the tests so that a slow test run cannot eat their time. A failing
# step does not stop the others. Results: one JSON object a line in $OUT/gpu_check.jsonl
# (./gpu_check_out/ when OUT is unset), every figure tagged with its step, then one
# {"step": ..., "status": "passed"|"failed"|"timeout"|"skipped", "rc": ...} record per step and
# a {"step": "summary", ...} line; the steps' full output goes to gpu_check.log. Progress lines
# and a short table of the main figures are printed. Exit status: 0 when every step passed, 1
# when one did not, 2 when there is no CUDA GPU (checked first; nothing is installed then).
#
# Usage (from anywhere; it works in the repository root):
#   bash benchmarks/gpu_check.sh [--budget SECONDS] [--no-install] [--skip-cpu]
#   bash benchmarks/gpu_check.sh --fetch-wheels [DIR]    (on a machine with a package index:
#        download into DIR, default .whl, the wheels of the requirements the GPU machine's
#        image lacks, for its Python 3.12 / x86-64; then carry DIR along to the GPU machine)
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S, GPU_CHECK_WHEELS (default .whl),
#   GPU_CHECK_PYTHON_VERSION (for --fetch-wheels, default 3.12).
# --allow-no-gpu runs every step even without a GPU (to try the script itself on a CPU machine;
# the GPU steps then fail).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
PY=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
INSTALL=1
RUN_CPU=1
ALLOW_NO_GPU=0
FETCH_WHEELS=

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --budget) BUDGET_S=${2:?--budget needs seconds}; shift ;;
        --budget=*) BUDGET_S=${1#*=} ;;
        --no-install) INSTALL=0 ;;
        --skip-cpu) RUN_CPU=0 ;;
        --allow-no-gpu) ALLOW_NO_GPU=1 ;;
        --fetch-wheels)
            FETCH_WHEELS=$WHEELS
            if [[ $# -gt 1 && $2 != -* ]]; then FETCH_WHEELS=$2; shift; fi ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $BUDGET_S =~ ^[0-9]+$ ]] || { echo "gpu_check: --budget must be whole seconds, got $BUDGET_S" >&2; exit 2; }

# ------------------------------------------------------------------------------------------------
# --fetch-wheels: run where a package index is reachable, not on the GPU machine
# ------------------------------------------------------------------------------------------------
# The requirements of '.[test]' (with their own requirements) that the GPU machine's image does not
# hold (its package list: zarr, dask, distributed, bokeh, ome-zarr-models and theirs are missing;
# numpy, scipy, h5py, matplotlib, pytest, nvidia-ml-py ... are there). Versions: those installed
# here, where there are any, so that the GPU machine runs what was tested here.
IMAGE_LACKS=(zarr numcodecs google-crc32c donfig distributed dask partd locket zict tblib tornado bokeh
             xyzservices ome-zarr-models pydantic pydantic-core annotated-types typing-inspection pydantic-zarr)
if [[ -n $FETCH_WHEELS ]]; then
    mapfile -t SPECS < <("$PY" - "${IMAGE_LACKS[@]}" <<'EOF'
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        print('%s==%s' % (name, metadata.version(name)))
    except metadata.PackageNotFoundError:
        print(name)
EOF
)
    pyver=${GPU_CHECK_PYTHON_VERSION:-3.12}
    platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
             manylinux2014_x86_64 manylinux1_x86_64; do
        platforms+=(--platform "$p")
    done
    mkdir -p "$FETCH_WHEELS"
    echo "gpu_check: downloading ${#SPECS[@]} wheels for CPython $pyver, x86-64 into $FETCH_WHEELS: ${SPECS[*]}"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        "${platforms[@]}" -d "$FETCH_WHEELS" "${SPECS[@]}"
    du -sh "$FETCH_WHEELS"
    echo "gpu_check: done; keep $FETCH_WHEELS git-ignored and carry it to the GPU machine with the working tree"
    exit 0
fi

# ------------------------------------------------------------------------------------------------
# A CUDA GPU first: without one nothing else is worth the time
# ------------------------------------------------------------------------------------------------
export PYTHONUNBUFFERED=1
if ! why=$(timeout 120 "$PY" -c '
import sys
try:
    import torch
except Exception as e:
    sys.exit("%s cannot import torch: %s" % (sys.executable, e))
if not torch.cuda.is_available():
    sys.exit("PyTorch %s (CUDA %s) in %s sees no CUDA GPU" % (torch.__version__, torch.version.cuda or "not built in",
                                                              sys.executable))
print("PyTorch %s, CUDA %s, %i GPU(s): %s" % (torch.__version__, torch.version.cuda, torch.cuda.device_count(),
                                             torch.cuda.get_device_name(0)))
' 2>&1); then
    why=$(printf '%s' "$why" | tail -n 1)
    echo "gpu_check: NO CUDA GPU: ${why:-python3 did not answer}." >&2
    echo "gpu_check: these are the GPU figures; run the script on a machine with a CUDA GPU." >&2
    if ((!ALLOW_NO_GPU)); then
        if [[ -n ${OUT:-} && -d $OUT ]]; then  # on the GPU machine, leave the reason with the results
            "$PY" -c 'import json, sys; print(json.dumps({"step": "cuda_available", "status": "failed", "rc": 2,
                      "reason": sys.argv[1]}))' "$why" >>"$OUT/gpu_check.jsonl" 2>/dev/null || true
        fi
        exit 2
    fi
    echo "gpu_check: --allow-no-gpu: running the steps all the same (the GPU steps will fail)" >&2
else
    echo "gpu_check: $why"
fi

OUT_DIR=${OUT:-$REPO/gpu_check_out}
mkdir -p "$OUT_DIR"
JSONL=$OUT_DIR/gpu_check.jsonl
LOG=$OUT_DIR/gpu_check.log
TESTLOG=$OUT_DIR/cuda_tests.log
: >"$JSONL"
: >"$LOG"
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's elektronn, installed or not
export MPLBACKEND=Agg

PASSED=() FAILED=() SKIPPED=()

progress() { printf '[gpu_check %4ds] %s\n' "$SECONDS" "$*"; }

# tag_json STEP FILE: the JSON object lines of FILE, each with "step": STEP first, to stdout
tag_json() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
step, path = sys.argv[1:3]
for line in open(path, errors='replace'):
    line = line.strip()
    if line.startswith('{'):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            print(json.dumps(dict({'step': step}, **record)), flush=True)
EOF
}

record() {  # record STEP STATUS RC SECONDS [EXTRA_JSON_MEMBERS]: the step's line, and its count
    printf '{"step": "%s", "status": "%s", "rc": %s, "seconds": %s%s}\n' "$1" "$2" "$3" "$4" "${5:+, $5}" >>"$JSONL"
    case $2 in
        passed) PASSED+=("$1") ;;
        skipped)
            if [[ ${5:-} == *'"required": true'* ]]; then
                FAILED+=("$1(skipped: no time left)")  # a wanted figure is missing
            else
                SKIPPED+=("$1")
            fi ;;
        *) FAILED+=("$1($2, rc $3)") ;;
    esac
}

# run_step NAME MAX_SECONDS MIN_SECONDS OPTIONAL COMMAND...
#   Runs COMMAND with a timeout of MAX_SECONDS, or what is left of the budget when that is less;
#   skips it when less than MIN_SECONDS are left. Its stdout and stderr go to the log, its JSON
#   lines (tagged) to the jsonl and the console. OPTIONAL=1: a skip for lack of time is no failure.
run_step() {
    local name=$1 max=$2 min=$3 optional=$4
    shift 4
    local left=$((BUDGET_S - SECONDS - 5))
    if ((left < min)); then
        progress "-- $name: skipped, ${left}s of the budget left (needs ${min}s)"
        if ((optional)); then
            record "$name" skipped null 0 '"reason": "time budget"'
        else
            record "$name" skipped null 0 '"reason": "time budget", "required": true'
        fi
        return 0
    fi
    local limit=$((max < left ? max : left))
    progress ">> $name (timeout ${limit}s): $*"
    printf '\n===== %s (%ds): %s\n' "$name" "$SECONDS" "$*" >>"$LOG"
    local t0=$SECONDS rc=0
    # SIGINT first: Python stops with a traceback, pytest with its summary; SIGKILL 15 s later
    timeout --signal=INT --kill-after=15 "$limit" "$@" >"$TMPD/$name.out" 2>"$TMPD/$name.err" || rc=$?
    local took=$((SECONDS - t0))
    cat "$TMPD/$name.out" >>"$LOG"
    if [[ -s $TMPD/$name.err ]]; then
        printf -- '----- %s: stderr\n' "$name" >>"$LOG"
        cat "$TMPD/$name.err" >>"$LOG"
    fi
    tag_json "$name" "$TMPD/$name.out" | tee -a "$JSONL" || true
    local status=passed
    if ((rc == 124 || rc == 137)); then
        status=timeout
    elif ((rc != 0)); then
        status=failed
    fi
    record "$name" "$status" "$rc" "$took"
    if [[ $status != passed ]]; then
        progress "<< $name: $status (rc $rc) after ${took}s; its last lines:"
        tail -n 8 "$TMPD/$name.err" "$TMPD/$name.out" 2>/dev/null | sed 's/^/     /'
    else
        progress "<< $name: passed in ${took}s"
    fi
}

# ------------------------------------------------------------------------------------------------
# The helpers the steps run
# ------------------------------------------------------------------------------------------------
cat >"$TMPD/environment.py" <<'EOF'
"""The GPU as nvidia-smi sees it and the software, as one JSON line; the nvidia-smi table to stderr."""
import json, os, platform, subprocess, sys
import torch
info = {'python': platform.python_version(), 'executable': sys.executable, 'torch': torch.__version__,
        'torch_cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(), 'cpu_count': os.cpu_count(),
        'cuda_visible_devices': os.environ.get('CUDA_VISIBLE_DEVICES'),
        'cudnn_allow_tf32': torch.backends.cudnn.allow_tf32,
        'matmul_allow_tf32': torch.backends.cuda.matmul.allow_tf32}
try:
    info['commit'] = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
except Exception:
    info['commit'] = None
fields = 'index,name,uuid,pci.bus_id,driver_version,memory.used,memory.total,utilization.gpu,temperature.gpu,' \
         'clocks.max.sm,power.limit,compute_mode'
smi = subprocess.run(['nvidia-smi', '--query-gpu=' + fields, '--format=csv,noheader'], capture_output=True,
                     text=True, timeout=30)
gpus = [dict(zip(fields.split(','), (v.strip() for v in line.split(','))))
        for line in smi.stdout.strip().splitlines()]
print(json.dumps(dict(figure='environment', gpus=gpus, **info)))
print(subprocess.run(['nvidia-smi'], capture_output=True, text=True, timeout=30).stdout, file=sys.stderr)
sys.exit(smi.returncode or (0 if gpus else 1))
EOF

cat >"$TMPD/install.py" <<'EOF'
"""This checkout into the machine's Python without re-installing torch: the requirements of
'.[test]' that are missing come from the wheelhouse (offline, --no-deps, into a folder put on
PYTHONPATH, as this workplace's GPU machine needs) or else from the package index; then
'pip install --no-deps -e .'. One JSON line; the exit status says whether all is in place."""
import ast, glob, json, os, subprocess, sys
from importlib import metadata

wheels, site, path_file = sys.argv[1:4]


def requirements():
    """install_requires and extras_require['test'] of setup.py, read without running it."""
    tree = ast.parse(open('setup.py').read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup':
            kw = {k.arg: k.value for k in node.keywords}
            return ast.literal_eval(kw['install_requires']) + ast.literal_eval(kw['extras_require'])['test']
    raise RuntimeError('no setup() call in setup.py')


def missing(reqs):
    try:
        from packaging.requirements import Requirement
    except ImportError:  # presence only
        Requirement = None
    out = []
    for text in reqs:
        if Requirement is None:
            name, spec, marker = text.split(';')[0].split('>')[0].split('<')[0].split('=')[0].strip(), None, None
        else:
            r = Requirement(text)
            name, spec, marker = r.name, r.specifier, r.marker
        if marker is not None and not marker.evaluate():
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if spec is not None and not spec.contains(version, prereleases=True):
            out.append('%s (have %s)' % (text, version))
    return out


def pip(*args, timeout=120):
    cmd = [sys.executable, '-m', 'pip'] + list(args)
    print('$', ' '.join(cmd), file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, timeout=timeout, stdout=sys.stderr, stderr=sys.stderr)
        return done.returncode
    except subprocess.TimeoutExpired:
        print('pip: timed out after %is' % timeout, file=sys.stderr)
        return 124


result = {'figure': 'install'}
reqs = requirements()
result['missing_before'] = before = missing(reqs)
found = sorted(glob.glob(os.path.join(wheels, '*.whl')))
if before and found:
    result['wheels'] = len(found)
    rc = pip('install', '-q', '--no-index', '--no-deps', '--no-compile', '--no-cache-dir', '--upgrade',
             '--target', site, *found)
    result['wheel_install_rc'] = rc
    if rc == 0:
        sys.path.insert(0, site)
        with open(path_file, 'w') as f:
            f.write(site)
elif before:  # a machine with a package index; fails fast where there is none
    names = [m.split(' (have')[0] for m in before]
    result['index_install_rc'] = pip('install', '-q', '--retries', '0', '--timeout', '10', *names, timeout=150)
result['missing_after'] = after = missing(reqs)
# the package itself, without its requirements (torch stays as it is) and without fetching a build
# backend: setuptools and wheel of the machine build the editable install
result['editable_rc'] = pip('install', '-q', '--no-deps', '--no-build-isolation', '--no-index', '-e', '.')
try:
    import elektronn
    result['elektronn'] = elektronn.__version__
    result['elektronn_from'] = os.path.dirname(elektronn.__file__)
except Exception as e:
    result['elektronn'] = 'cannot import: %s' % e
if result['editable_rc']:
    result['note'] = 'the editable install failed (see gpu_check.log); the checkout is used through PYTHONPATH'
print(json.dumps(result))
sys.exit(0 if not after and 'cannot' not in result['elektronn'] else 1)
EOF

cat >"$TMPD/gpu_auto.py" <<'EOF'
"""--gpu=auto must choose a CUDA device: initGPU('auto') and the line it prints, as JSON."""
import contextlib, io, json, sys
from elektronn.net.device import initGPU
with contextlib.redirect_stdout(io.StringIO()) as said:
    device = initGPU('auto')
ok = device.type == 'cuda'
print(json.dumps({'figure': 'gpu_auto', 'device': str(device), 'chose_cuda': ok, 'printed': said.getvalue().strip()}))
sys.exit(0 if ok else 1)
EOF

cat >"$TMPD/pytest_summary.py" <<'EOF'
"""pytest's closing counts ('3 passed, 1 skipped in 2.1s') from its log, as JSON."""
import json, re, sys
text = open(sys.argv[1], errors='replace').read()
lines = [l for l in text.splitlines() if re.search(r'\b(passed|failed|skipped|error|errors|deselected)\b', l)
         and re.search(r'\bin [0-9.]+s\b', l)]
counts = {}
if lines:
    for n, what in re.findall(r'(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)',
                              lines[-1]):
        counts[what.rstrip('s') if what in ('errors', 'warnings') else what] = int(n)
print(json.dumps({'figure': 'cuda_tests', 'summary': lines[-1].strip('= ') if lines else None, **counts,
                  'rc': int(sys.argv[2])}))
sys.exit(0 if counts.get('passed') else 1)  # on a GPU machine, no test passing is a failure too
EOF

# shellcheck disable=SC2317  # run through bash -c
cuda_tests() {  # pytest's output goes to its own log; its closing line and counts to the jsonl
    local rc=0
    "$PY" -m pytest -q -m cuda -p no:cacheprovider --continue-on-collection-errors tests/ >"$TESTLOG" 2>&1 || rc=$?
    "$PY" "$TMPD/pytest_summary.py" "$TESTLOG" "$rc" || ((rc)) || rc=1
    return "$rc"
}
export -f cuda_tests
export PY TMPD TESTLOG

# ------------------------------------------------------------------------------------------------
# The steps, most wanted first
# ------------------------------------------------------------------------------------------------
progress "budget ${BUDGET_S}s; results in $JSONL"
run_step nvidia_smi 60 10 0 "$PY" "$TMPD/environment.py"

if ((INSTALL)); then
    run_step install 150 30 0 "$PY" "$TMPD/install.py" "$WHEELS" /tmp/gpu_check_site "$TMPD/pythonpath"
    if [[ -s $TMPD/pythonpath ]]; then  # wheels installed into a folder of their own
        PYTHONPATH="$PYTHONPATH:$(cat "$TMPD/pythonpath")"
        export PYTHONPATH
    fi
else
    progress "-- install: left out (--no-install)"
fi

run_step gpu_auto 60 15 0 "$PY" "$TMPD/gpu_auto.py"
run_step bench_net_cuda 150 60 0 "$PY" benchmarks/bench_net.py --device cuda --seconds 2 --rounds 3
run_step bench_predict_cuda 150 45 0 \
    "$PY" benchmarks/bench_predict.py --device cuda --volume 64,512,512 --rounds 3 --skip-stitch
run_step cuda_tests 200 45 0 bash -c cuda_tests

# --- Later issues: the bf16 / fp16 figures go here, as more run_step lines, for example ---------------
# run_step bench_net_cuda_bf16 120 60 0 "$PY" benchmarks/bench_net.py --device cuda --dtype bf16 --seconds 2 --rounds 3
# run_step bench_predict_cuda_bf16 120 45 0 "$PY" benchmarks/bench_predict.py --device cuda --dtype bf16 --skip-stitch
# ------------------------------------------------------------------------------------------------------

if ((RUN_CPU)); then  # optional: the CPU of the same machine, all its cores, for comparison
    run_step bench_net_cpu 120 90 1 "$PY" benchmarks/bench_net.py --device cpu --threads "$(nproc)" --seconds 2 --rounds 2
fi

# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------
"$PY" - "$JSONL" <<'EOF' || true
import json, sys
rows = []
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    f = r.get('figure', '')
    if f.endswith('_training_steps_per_s'):
        rows.append('%-15s %-24s elektronn %9.1f  plain %9.1f (%s)  ratio %.3f  %s GFLOP/s' % (
            r['step'], f.replace('_training_steps_per_s', ' steps/s'), r['elektronn_steps_per_s'],
            r['plain_steps_per_s'], r['plain_format'], r['ratio_plain_time_over_elektronn_time'],
            r['elektronn_gflops']))
    elif f in ('voxels_per_s_mfp', 'voxels_per_s_plain_dilated'):
        rows.append('%-15s %-24s %.3g voxels/s  %s' % (r['step'], f, r['value'], r.get('plain_format', '')))
    elif f == 'mfp_over_plain_dilated':
        rows.append('%-15s %-24s %.3f (target %s)' % (r['step'], f, r['value'], r['target']))
    elif f == 'cuda_tests':
        rows.append('%-15s %-24s %s' % (r['step'], 'pytest -m cuda', r.get('summary')))
    elif f == 'gpu_auto':
        rows.append('%-15s %-24s %s' % (r['step'], '--gpu=auto', r.get('printed')))
if rows:
    print('\n'.join(['', 'gpu_check figures:'] + ['  ' + r for r in rows]))
EOF

total=$((${#PASSED[@]} + ${#FAILED[@]}))
printf '{"step": "summary", "status": "%s", "passed": %d, "failed": %d, "skipped": %d, "seconds": %d, "budget_s": %d}\n' \
    "$( ((${#FAILED[@]})) && echo failed || echo passed)" "${#PASSED[@]}" "${#FAILED[@]}" "${#SKIPPED[@]}" \
    "$SECONDS" "$BUDGET_S" >>"$JSONL"
if ((${#FAILED[@]})); then
    echo "gpu_check: FAILED: ${#FAILED[@]} of $total steps did not pass: ${FAILED[*]}; passed: ${PASSED[*]:-none}${SKIPPED[*]:+; skipped: ${SKIPPED[*]}} (${SECONDS}s; results in $OUT_DIR)"
    exit 1
fi
echo "gpu_check: PASSED: all $total steps (${PASSED[*]})${SKIPPED[*]:+; skipped: ${SKIPPED[*]}} in ${SECONDS}s; results in $OUT_DIR"
exit 0
