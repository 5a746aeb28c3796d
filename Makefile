# Two commands a newcomer needs: `make demo` and `make test`. Both install what is missing
# (virtual environment, npm packages, Kafka's jars, and Debian packages when run as root),
# and a second run reuses all of it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: demo test lint bench setup setup-browser broker-start broker-stop clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo    start Kafka, the dashboard and the simulator; open http://127.0.0.1:5000"
	@echo "             (make demo NODES=3: on a local three-node Kafka cluster)"
	@echo "make test    run every test against a real Kafka broker"
	@echo "make lint    ruff and mypy on the Python code"
	@echo "make bench   the benchmarks under bench/ (results in docs/benchmarks.md)"
	@echo "make clean   remove the environment, npm packages, Kafka jars and broker data"

# NODES=3 runs the demo on a local three-node cluster (BROKER_NODES in the environment does the same).
demo: setup
	$(if $(NODES),BROKER_NODES=$(NODES) )$(PY) tools/demo.py

test: setup setup-browser lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Like the demo: a cluster named in KAFKA_BOOTSTRAP_SERVERS is used as it is, else the local broker is started
# (left running afterwards; `make broker-stop` stops it).
bench: setup setup-browser
	$(if $(KAFKA_BOOTSTRAP_SERVERS),,$(PY) -m broker start)
	$(PY) -m bench

setup: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/jars

setup-browser: $(STAMPS)/browser

$(STAMPS)/system: tools/ensure-system.sh
	tools/ensure-system.sh
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/browser: tools/ensure-system.sh
	tools/ensure-system.sh --browser
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: requirements.txt requirements-dev.txt | $(STAMPS)/system
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/npm: package.json package-lock.json | $(STAMPS)/system
	npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

# Kafka's jars from Maven Central (not needed when KAFKA_HOME points at a Kafka install).
$(STAMPS)/jars: broker/pom.xml | $(STAMPS)/venv
	$(PY) -m broker fetch
	@mkdir -p $(STAMPS) && touch $@

broker-start: setup
	$(PY) -m broker start

broker-stop: $(STAMPS)/venv
	$(PY) -m broker stop

clean:
	-$(PY) -m broker stop
	rm -rf $(VENV) node_modules broker/.work $(STAMPS) test-artifacts
