# Sourced by benchmarks/gpu_check.sh and gpu_ab.sh: the interpreter (PYTHON, else .venv, else python3),
# the carried wheels (.whl/, for the packages a GPU machine's image lacks: see gpu_check.sh) and the
# machine description, written to "$OUT/machine.txt". Expects OUT to be set.
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vsr_site .whl/*.whl
    export PYTHONPATH=/tmp/vsr_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
start=$(date +%s)
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    nproc
} > "$OUT/machine.txt" 2>&1
