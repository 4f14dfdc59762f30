# Two commands for a fresh machine: `make demo` and `make test`. Both create the venv themselves.
# ROS_DISTRO picks which rclpy wheels the venv gets: kilted (default, .venv) or jazzy (.venv-jazzy).
SHELL := /bin/bash
PYTHON ?= python3
ROS_DISTRO ?= kilted
ifeq ($(ROS_DISTRO),kilted)
  VENV ?= .venv
  CONSTRAINTS := requirements/constraints.txt
  ROS_EXTRA := ros
else ifeq ($(ROS_DISTRO),jazzy)
  VENV ?= .venv-jazzy
  CONSTRAINTS := requirements/constraints-jazzy.txt
  ROS_EXTRA := ros-jazzy
else
  $(error ROS_DISTRO=$(ROS_DISTRO) (from $(origin ROS_DISTRO)) has no rclpy wheels here: use ROS_DISTRO=kilted or ROS_DISTRO=jazzy)
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# launch + launch_ros wheels per distro (CI has shared/ beside the clone); without them the launch tests skip.
LAUNCH_WHEELS := ../shared/ros-launch
LAUNCH_DISTROS := humble jazzy rolling
# drops pip's notes about absent local index folders (pipefail keeps pip's exit status)
PIP_QUIET := 2>&1 | { grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' || true; }

.PHONY: venv demo test fuzz bench colcon clean

venv: $(STAMP)

$(STAMP): setup.py $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	set -o pipefail; $(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[train,$(ROS_EXTRA),bags,dev,dist]' $(PIP_QUIET)
	# each distro's launch in its own folder ($(VENV)/launch/<distro>, put on sys.path by the launch tests);
	# their dependencies and the composition_interfaces shim (built from a copy: shared/ is read-only) go in the venv
	set -eo pipefail; if [ -d $(LAUNCH_WHEELS) ]; then \
	  for d in $(LAUNCH_DISTROS); do rm -rf $(VENV)/launch/$$d; \
	    $(PY) -m pip install -q --no-deps --target $(VENV)/launch/$$d $(LAUNCH_WHEELS)/$$d/*.whl $(PIP_QUIET); done; \
	  rm -rf $(VENV)/launch/shim-src; cp -r $(LAUNCH_WHEELS)/composition_interfaces_shim $(VENV)/launch/shim-src; \
	  chmod -R u+w $(VENV)/launch/shim-src; rm -rf $(VENV)/launch/shim-src/build $(VENV)/launch/shim-src/*.egg-info; \
	  $(PY) -m pip install -q -c $(CONSTRAINTS) osrf-pycommon lark packaging pyyaml $(VENV)/launch/shim-src $(PIP_QUIET); \
	fi
	touch $@

demo: venv
	$(VENV)/bin/liquid-control demo --robot cartpole --duration 20 --out demo_out

# Two workers (pytest-xdist), a test file each at a time; each worker has its own ROS domain (test/conftest.py).
test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile test

# The fuzz suites (make test runs them briefly) with 20x the examples, and what each outcome counted.
fuzz: venv
	LC_FUZZ=long $(PY) -m pytest -q test/test_fuzz_files.py test/test_fuzz_params.py test/test_fuzz_bags.py --hypothesis-show-statistics

bench: venv
	$(VENV)/bin/liquid-control bench step --json bench/results/step.json

# Build as a ROS 2 workspace package would be built (colcon from PyPI, ament_python).
colcon: venv
	rm -rf /tmp/lc_ws && mkdir -p /tmp/lc_ws/src && ln -s $(CURDIR) /tmp/lc_ws/src/liquid_control
	cd /tmp/lc_ws && $(CURDIR)/$(VENV)/bin/colcon build --base-paths src

clean:
	rm -rf .venv .venv-jazzy .venv-min build install log *.egg-info

# The declared floors: requirements/min.txt pins numpy, onnx, onnxruntime, pyyaml, gymnasium, mujoco and
# rosbags at setup.py's lowest versions (test_packaging keeps the two equal); the ROS wheels, torch and pytest
# come at requirements/constraints.txt's versions, the rest of the extras at what pip picks beside the floors.
# Runs the core, sim, training and bags tests there.
VENV_MIN ?= .venv-min
MIN_PINS := grep -E '^(ros-|torch==|pytest==|pluggy==|iniconfig==)' requirements/constraints.txt
MIN_TESTS := test/test_artifact.py test/test_policy.py test/test_command.py test/test_spec_observation.py \
	test/test_diagnostics.py test/test_messages.py test/test_sim_env.py test/test_sim_wrappers.py test/test_render.py \
	test/test_eval.py test/test_train.py test/test_cli_core.py test/test_bags_io.py test/test_replay.py \
	test/test_cli_mistakes.py

.PHONY: test-min
$(VENV_MIN)/.installed: setup.py requirements/min.txt requirements/constraints.txt
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	set -o pipefail; $(VENV_MIN)/bin/python -m pip install -q -r requirements/min.txt -c <($(MIN_PINS)) \
	  -e '.[train,ros,bags,ncps]' pytest 2>&1 | { grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' || true; }
	touch $@

test-min: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/python -m pytest -q $(MIN_TESTS)

# Mutation testing (mutmut) of the control law's core modules, each mutant run against the fast unit tests
# only (no DDS). MUTATE_MODULES names files under liquid_control/core/; a test file not (yet) in the tree is
# left out. It runs in a copy of the tree ($(MUTATE_DIR)), never mutating the working tree, and ends with
# killed/total per module (timeouts count as killed), failing below MUTATE_MIN percent in all.
# `cd $(MUTATE_DIR) && ../../$(PY) -m mutmut results` lists the survivors, `... mutmut show NAME` shows one.
MUTATE_MODULES := command observation control
MUTATE_TESTS := $(wildcard test/test_command.py test/test_spec_observation.py test/test_policy.py test/test_control.py)
MUTATE_DIR := build/mutate
MUTATE_MIN := 90
comma := ,

.PHONY: mutate
mutate: venv
	rm -rf $(MUTATE_DIR) && mkdir -p $(MUTATE_DIR) && cp -r liquid_control test $(MUTATE_DIR)/
	printf '[tool.mutmut]\nsource_paths = ["liquid_control"]\nonly_mutate = [%s]\npytest_add_cli_args_test_selection = [%s]\npytest_add_cli_args = ["-q", "-p", "no:cacheprovider"]\n' \
	  '$(subst $(eval) ,$(comma) ,$(patsubst %,"liquid_control/core/%.py",$(MUTATE_MODULES)))' \
	  '$(subst $(eval) ,$(comma) ,$(patsubst %,"%",$(MUTATE_TESTS)))' > $(MUTATE_DIR)/pyproject.toml
	cd $(MUTATE_DIR) && LIQUID_CONTROL_SHARE=$(CURDIR) $(abspath $(PY)) -m mutmut run > mutmut-run.log 2>&1 \
	  || { tail -n 40 mutmut-run.log; exit 1; }
	cd $(MUTATE_DIR) && $(abspath $(PY)) -m mutmut results --all true \
	  | sed -nE 's/^ *([a-z_.]+)\.x.*: (.*)$$/\1 \2/p' | awk '{ m = $$1; total[m]++; \
	    if ($$2 == "killed" || $$2 == "timeout") killed[m]++ } END { for (m in total) { k += killed[m]; t += total[m]; \
	    printf "%-40s %4d / %4d killed (%.1f%%)\n", m, killed[m], total[m], 100 * killed[m] / total[m] } \
	    printf "%-40s %4d / %4d killed (%.1f%%)\n", "all", k, t, 100 * k / t; \
	    if (t == 0 || 100 * k < $(MUTATE_MIN) * t) { print "below $(MUTATE_MIN)%"; exit 1 } }'
