# make demo  - set up .venv if missing, train the image classifier on the embedded digits data
# make test  - set up .venv if missing, install headless Chromium if missing (apt), lint (make lint: ruff),
#              run the whole test suite on jax, tensorflow and torch (JOBS=3: all at once)
PYTHON ?= python3
VENV ?= .venv
BACKENDS ?= jax tensorflow torch
PYTEST_ARGS ?=
JOBS ?= 3
export KDL_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint install browser clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints-cpu.txt -e '.[all,test]'
	# the lexicon decoder's pyctcdecode: its numpy<2 pin is stale (see pyproject.toml), so no deps
	$(VENV)/bin/python -m pip install --quiet --no-deps -c constraints-cpu.txt pyctcdecode
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/kdl train recipes/image_classification/digits_cnn.toml --out runs/digits_cnn

lint: install
	$(VENV)/bin/ruff check kdl tests benchmarks

# The browser test drives the system's headless Chromium (Debian's chromium + chromium-driver).
browser:
	@command -v chromedriver >/dev/null || { \
		echo "installing chromium and chromium-driver (apt) for the browser test"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }; }

# The backends' sessions run side by side, JOBS at a time (all three by default): each is mostly
# one core's work (building, tracing and compiling small models; starting processes), so on a
# 2-core machine they finish in about half the time of one after the other. Each output line
# starts with its backend's name; a session that fails fails the target.
test: lint browser
	@for b in $(BACKENDS); do case $$b in jax|tensorflow|torch) ;; \
		*) echo "make test: BACKENDS names '$$b'; each must be jax, tensorflow or torch"; exit 2;; esac; done
	@printf '%s\n' $(BACKENDS) | xargs -P $(JOBS) -I {} bash -o pipefail -c \
		'echo "[{}] === tests on {} ==="; KERAS_BACKEND={} $(VENV)/bin/python -m pytest $(PYTEST_ARGS) 2>&1 | sed -u "s/^/[{}] /"' \
		|| { echo "make test: tests failed on a backend (its lines above start with its name)"; exit 1; }

clean:
	rm -rf $(VENV) runs build *.egg-info
