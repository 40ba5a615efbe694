# radiolab: `make demo` runs the main job on a synthetic cohort, `make test` runs the tests.
# Both create .venv and install everything first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slurm test-wheel bench bench-features clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel versioneer numpy
	# pyradiomics ships only sdists; they build against the numpy installed above.
	# 3.1.0's sdist lacks its C headers and misreports its version, so 3.0.1 is used.
	$(BIN)/pip install --quiet --no-build-isolation pyradiomics==3.0.1
	# torch: the CPU build, pinned.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/radiolab demo --out demo-out

# The report's browser tests need a headless chromium; as root it is installed when missing.
# The tests marked `slurm` run on a single-node SLURM started around pytest (as root; they
# skip elsewhere); only the daemons started for the run are stopped afterwards.
test: $(STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium; } \
		|| echo "make test: no chromium; the report's browser tests will skip"
	bash .ci/with-slurm.sh $(BIN)/python -m pytest

test-slurm: $(STAMP)
	bash .ci/with-slurm.sh $(BIN)/python -m pytest -m slurm tests/test_executors_clusters.py

# The wheel as users get it: built from the tree, installed with its dependencies (from
# PyPI) into a fresh venv, run from a folder outside the source tree: `radiolab segment
# --model zaffino2021` on a phantom, then tests/test_data.py against the installed package
# (--confcutdir keeps the repository's root conftest.py, which would put the source tree
# on sys.path, out).
WHEEL_CHECK := build/wheel-check
test-wheel: $(STAMP)
	rm -rf $(WHEEL_CHECK) && mkdir -p $(WHEEL_CHECK)/work
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(WHEEL_CHECK)/dist .
	$(PYTHON) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/pip install --quiet "$$(ls $(WHEEL_CHECK)/dist/radiolab-*.whl)" pytest
	cd $(WHEEL_CHECK)/work && ../venv/bin/python -c "from radiolab.synthetic import make_cohort; \
		make_cohort('scans', 1, shape=(40, 64, 64), spacing=(7.0, 5.0, 5.0), seed=0)"
	cd $(WHEEL_CHECK)/work && ../venv/bin/radiolab segment --model zaffino2021 --in scans --out labels --quiet
	test -s $(WHEEL_CHECK)/work/labels/case_000_labels.nrrd
	cd $(WHEEL_CHECK)/work && RADIOLAB_WHEEL_TEST=1 ../venv/bin/python -m pytest -q -p no:cacheprovider \
		-c /dev/null --rootdir . --confcutdir $(CURDIR)/tests -W error $(CURDIR)/tests/test_data.py

# The package's bytecode is compiled first, as an installed wheel has it (an editable
# install only writes it on first import, and not at all with PYTHONDONTWRITEBYTECODE).
bench: $(STAMP)
	$(BIN)/python -m compileall -q radiolab
	$(BIN)/python benchmarks/bench_segment.py

# Seconds per region of `radiolab features` on a 512x512x300 phantom (about 10 minutes).
bench-features: $(STAMP)
	$(BIN)/python benchmarks/bench_features.py --work bench-features

clean:
	rm -rf $(VENV) demo-out bench-features .pytest_cache $(WHEEL_CHECK)
