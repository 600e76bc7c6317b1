# napari-unet: the two commands of the README, plus a few helpers.
#   make demo   set up .venv and run the whole loop on the built-in sample
#   make test   set up .venv (with the testing extra) and run the whole suite, headless
#   make test-pyqt6   the GUI tests again, in .venv-pyqt6 with PyQt6 instead of PyQt5
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
DEMO_OUT ?= demo-output
VENV_PYQT6 := .venv-pyqt6
STAMP_PYQT6 := $(VENV_PYQT6)/.stamp-test

.PHONY: demo test test-pyqt6 setup setup-test lint bench docs clean

$(STAMP_RUN): setup.cfg pyproject.toml scripts/setup-env.sh
	scripts/setup-env.sh pyqt5
	@touch $@

$(STAMP_TEST): setup.cfg pyproject.toml scripts/setup-env.sh
	scripts/setup-env.sh pyqt5,testing
	@touch $@ $(STAMP_RUN)

setup: $(STAMP_RUN)
setup-test: $(STAMP_TEST)

# With a display: napari opens with the plugin docked and the sample loaded.
# Without one: the same loop runs headless under Xvfb and writes $(DEMO_OUT)/.
demo: $(STAMP_RUN)
	@if [ -n "$$DISPLAY" ]; then \
		$(PY) -m napari_unet; \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m napari_unet --headless --output $(DEMO_OUT); \
	fi

test: $(STAMP_TEST)
	$(PY) -m pytest -q

# napari installs PyQt6 by default: the GUI tests again in .venv-pyqt6, a second venv layered on
# .venv (same packages, PyQt6 instead of PyQt5; see scripts/setup-env.sh)
$(STAMP_PYQT6): $(STAMP_TEST)
	VENV=$(VENV_PYQT6) BASE_VENV=$(VENV) scripts/setup-env.sh pyqt6,testing
	@touch $@

test-pyqt6: $(STAMP_PYQT6)
	$(VENV_PYQT6)/bin/python -c "import qtpy; assert qtpy.API_NAME == 'PyQt6', qtpy.API_NAME"
	QT_API=pyqt6 PYTEST_QT_API=pyqt6 $(VENV_PYQT6)/bin/python -m pytest -q -m gui

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check src napari_unet tests benchmarks scripts

# Benchmarks print tables (ratios against a baseline measured in the same run); several use the
# ISBI 2012 data in ../shared/data/isbi2012 when present. Not part of the test suite.
bench: $(STAMP_TEST)
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) benchmarks/bench_weights.py
	$(PY) benchmarks/bench_predict.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_losses_metrics.py
	$(PY) benchmarks/bench_responsiveness.py

# Screenshots for docs/ from the real app (under Xvfb when there is no display)
docs: $(STAMP_RUN)
	@if [ -n "$$DISPLAY" ]; then $(PY) scripts/make_screenshots.py; \
	else xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/make_screenshots.py; fi

clean:
	rm -rf $(VENV) $(VENV_PYQT6) $(DEMO_OUT) build *.egg-info src/*.egg-info .pytest_cache
