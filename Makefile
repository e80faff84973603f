# Two commands do all the set-up on a fresh machine:
#   make run    create .venv (pinned versions), then run the main job
#   make test   create .venv, then run the whole test suite
# Data: MNIST and CIFAR-10 are read from DATA_DIR (default ../shared/data when
# that folder exists; otherwise no --data-dir is passed and the standard Keras
# download into ~/.keras/datasets is used). An explicit DATA_DIR that does not
# exist is a one-line error from effmodel.

PYTHON   ?= python3.11
VENV     := .venv
BIN      := $(VENV)/bin
DEFAULT_DATA_DIR := $(abspath ../shared/data)
ifeq ($(origin DATA_DIR),undefined)
DATA_DIR := $(if $(wildcard $(DEFAULT_DATA_DIR)/.),$(DEFAULT_DATA_DIR))
endif
DATA_ARG := $(if $(strip $(DATA_DIR)),--data-dir $(DATA_DIR))
OUT      ?= out/reference
# The main job: the eight reference CNNs through INIsim, sized for a 2-core
# machine (see README "The main job"); override RUN_ARGS for the full-size run.
REFERENCE := SmallCNN1,MediumCNN1,LargeCNN1,DeepCNN1,SmallCNN2,MediumCNN2,LargeCNN2,DeepCNN2
RUN_ARGS ?= --simulator inisim --models $(REFERENCE) --num-test 500 --epochs 5 --batch-size 50
PLUGINS  := plugins/effmodel-reference plugins/effmodel-costs plugins/effmodel-inisim plugins/effmodel-norse plugins/effmodel-example plugins/effmodel-numpysim

ifneq ($(strip $(DATA_DIR)),)
export EFFMODEL_DATA_DIR ?= $(DATA_DIR)
endif
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup run test campaign clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so that pip never picks a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	# Norse's own metadata would pull torchvision; its simulator needs only torch.
	$(BIN)/pip install -q --no-deps norse==1.1.0 nir==1.0.8 nirtorch==2.6
	$(BIN)/pip install -q --no-deps -e . $(addprefix -e ,$(PLUGINS))
	touch $@

# The report pools the fresh rows with the committed campaign evidence
# (reports/campaign/*/, each folder its own protocol term in the fits), so the
# summary states a verdict with its CI; on the eight fresh rows alone it would
# be "undetermined (n = 8)".
EVIDENCE := $(patsubst %/effmodel.sqlite,%,$(wildcard reports/campaign/*/effmodel.sqlite))
comma := ,
empty :=
space := $(empty) $(empty)
run: setup
	$(BIN)/effmodel run $(RUN_ARGS) $(DATA_ARG) --output $(OUT)
	$(BIN)/effmodel report --input $(subst $(space),$(comma),$(strip $(OUT) $(EVIDENCE))) --format html,md --output $(OUT)/report

# pytest-xdist: a worker per core this process may use (at most 4), each with
# its share of the cores; a module's (or class's) tests run on one worker, so
# its module fixtures are built once (tests/conftest.py). Not loadgroup: with
# pytest 9.2 xdist_group marks are silently ignored (pytest-xdist issue 1386).
test: setup
	$(BIN)/python -m pytest -n auto --dist loadscope --durations=25

# The campaign (issue 20, reports/campaign/PLAN.md): every part under one time
# budget; reruns continue where the last one stopped.
BUDGET ?= 150m
campaign: setup
	EFFMODEL=$(abspath $(BIN))/effmodel DATA_DIR=$(DATA_DIR) reports/campaign/run-campaign.sh $(BUDGET)

clean:
	rm -rf $(VENV) out .pytest_cache
