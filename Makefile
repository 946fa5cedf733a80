# The README's two commands: `make demo` and `make test`. Everything else is a building block.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: all venv python-venv redis test test-fast lint typecheck pytest demo bench deb lock clean

all: test

$(STAMP): pyproject.toml | python-venv
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's python3 ships without `venv` (python3-venv): installed only when missing.
python-venv:
	@python3 -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing Debian's python3-venv"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y python3-venv >/dev/null 2>&1 || \
	  { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y python3-venv >/dev/null; }; }

# Debian's redis-server, installed only when missing (tests and the demo start their own).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing Debian's redis-server"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y redis-server >/dev/null 2>&1 || \
	  { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y redis-server >/dev/null; }; }
	@# Debian starts a system redis on 6379; we never rely on it.

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv redis
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# The tests that need nothing but Python (engine, parsers, config, conformance fixtures): no
# redis-server, no simulator, no Celery. Under a minute; `make test` runs everything.
test-fast: venv
	$(VENV)/bin/pytest -q -m "not integration"

demo: venv redis
	$(PY) -m demo

bench: venv redis
	$(PY) -m benchmarks

# pve-balancer_<version>_<arch>.deb in dist/, for the Debian release this runs on.
deb:
	packaging/build-deb.sh dist

# requirements.lock: the runtime dependencies (no extras) resolved in a fresh venv.
lock: python-venv
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	{ sed -n '1,2p' requirements.lock; .lock-venv/bin/pip freeze --exclude pve-balancer; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo dist build
