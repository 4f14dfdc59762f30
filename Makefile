# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench colcon clean

venv: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# (grep drops pip's notes about absent local index folders; pipefail keeps pip's exit status)
	set -o pipefail; $(PY) -m pip install -q -c requirements/constraints.txt -e '.[train,ros,bags,dev]' 2>&1 \
	  | { grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' || true; }
	touch $@

demo: venv
	$(VENV)/bin/liquid-control demo --robot cartpole --duration 20 --out demo_out

test: venv
	$(PY) -m pytest -q test

bench: venv
	$(VENV)/bin/liquid-control bench step --json bench/results/step.json

# Build as a ROS 2 workspace package would be built (colcon from PyPI, ament_python).
colcon: venv
	rm -rf /tmp/lc_ws && mkdir -p /tmp/lc_ws/src && ln -s $(CURDIR) /tmp/lc_ws/src/liquid_control
	cd /tmp/lc_ws && $(CURDIR)/$(VENV)/bin/colcon build --base-paths src

clean:
	rm -rf $(VENV) build install log *.egg-info
