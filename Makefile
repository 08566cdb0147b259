# Every target sets itself up on a fresh machine: `make demo` and `make test` need nothing but Python 3.11.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REF    := $(VENV)/basicsr_ref/.ready
DEMO_DATA := data/demo

PROXY_DATA := data/proxy
SPYNET := data/pretrained/spynet_synthetic.pth

.PHONY: venv demo test test-slow test-all bench basicsr-ref proxy-data clean

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# BasicSR 1.4.2's sources, unpacked (never installed or imported as a package): the reference
# that tests compare our architectures, metrics and resize against (see tests/basicsr_ref.py).
basicsr-ref: $(REF)

$(REF): | $(STAMP)
	rm -rf $(VENV)/basicsr_ref && mkdir -p $(VENV)/basicsr_ref
	$(PY) -m pip download --quiet --no-deps --no-build-isolation basicsr-fixed==1.4.2 -d $(VENV)/basicsr_ref
	tar xzf $(VENV)/basicsr_ref/basicsr*fixed-1.4.2.tar.gz -C $(VENV)/basicsr_ref
	touch $@

# The embedded default: build a REDS-layout dataset from real footage, train on CPU, evaluate.
demo: $(STAMP)
	$(PY) scripts/make_demo_data.py --out $(DEMO_DATA)
	$(PY) train.py -opt options/demo_cpu.yml --auto_resume
	$(PY) scripts/evaluate.py -opt options/demo_cpu.yml --bicubic

# The accuracy proxy of the ablation tables (experiments/ablations/scales/proxy_basicvsr16.yml):
# bigbuckbunny at 640x360 and bikes at 640x272 as frames and raw stores, and a SpyNet pretrained
# on synthetic flow from the same footage (no download). Each step keeps what is already built.
proxy-data: $(STAMP)
	$(PY) scripts/make_demo_data.py --preset proxy --out $(PROXY_DATA)
	$(PY) scripts/create_raw_store.py --input $(PROXY_DATA)/train_sharp --output $(PROXY_DATA)/train_sharp.raw
	$(PY) scripts/create_raw_store.py --input $(PROXY_DATA)/train_sharp_bicubic/X4 --output $(PROXY_DATA)/train_sharp_bicubic_X4.raw
	$(PY) scripts/pretrain_spynet.py --out $(SPYNET)

test: $(STAMP) $(REF)
	VSR_REQUIRE_BASICSR_REF=1 $(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP) $(REF)
	VSR_REQUIRE_BASICSR_REF=1 $(PY) -m pytest -q -m slow

test-all: $(STAMP) $(REF)
	VSR_REQUIRE_BASICSR_REF=1 $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DATA)
