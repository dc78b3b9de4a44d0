# Two commands for a fresh machine: `make run` (try it out) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000
BASE := http://$(HOST):$(PORT)
# `make simulator` serves the WeChat simulator alone on this port.
PORT_SIM ?= 5001
# Where the service finds the simulator: inside itself by default; `make run
# SIMULATOR_BASE=http://127.0.0.1:5001` uses the one `make simulator` started instead.
SIMULATOR_BASE ?= $(BASE)

# `make run` starts the service with the built-in WeChat simulator as its WeChat: the real API hosts
# are never contacted. Set these variables in the environment to point it somewhere else.
export FLASK_WEIXIN_SIMULATOR ?= $(if $(filter $(BASE),$(SIMULATOR_BASE)),true,false)
export FLASK_WEIXIN_MP_API_BASE ?= $(SIMULATOR_BASE)/simulator/mp
export FLASK_WEIXIN_QY_API_BASE ?= $(SIMULATOR_BASE)/simulator/qy
export FLASK_WEIXIN_QY_LOGIN_URL ?= $(SIMULATOR_BASE)/simulator/qy/login
export FLASK_WEIXIN_QY_OAUTH_URL ?= $(SIMULATOR_BASE)/simulator/qy/oauth2/authorize
export FLASK_SCHEDULER_ENABLED ?= true
# Where `make simulator` says the service is (its suggested callback URLs, its WeCom trusted domain).
SIMULATOR_SERVICE_URL ?= $(BASE)

.PHONY: run simulator test audit venv dev test-tools translations clean

run: $(VENV)/.installed
	$(VENV)/bin/flask --app wsgi init-db
	@echo "Open $(BASE)/ in your browser (the WeChat simulator is at $(SIMULATOR_BASE)/simulator/)."
	$(VENV)/bin/flask --app wsgi run --host $(HOST) --port $(PORT)

# The WeChat simulator as one process of its own, for a service served by several processes (gunicorn
# workers), which must not each hold a simulator: see docs/deployment.md.
simulator: $(VENV)/.installed
	@echo "The WeChat simulator is at http://$(HOST):$(PORT_SIM)/simulator/; point the service at it, e.g." \
	  "make run SIMULATOR_BASE=http://$(HOST):$(PORT_SIM)"
	FLASK_SIMULATOR_SERVICE_URL=$(SIMULATOR_SERVICE_URL) \
	  $(VENV)/bin/flask --app "webapp.simulator:create_standalone_app()" run --host $(HOST) --port $(PORT_SIM)

# The suite runs in one process per core (pytest-xdist), each taking whole test files; a test file's
# tests run in order in one process. `make test PYTEST_ARGS=...` replaces these (e.g. `-p no:xdist -x`).
PYTEST_ARGS ?= -n auto --dist loadfile
test: $(VENV)/.dev-installed test-tools audit
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

# Security checks, run first by `make test`: bandit on our code (settings in .bandit.yaml), then the pinned
# dependencies against known vulnerabilities. Without a reachable vulnerability service the second step
# warns loudly and continues; it fails only on a real finding (see docs/security.md).
audit: $(VENV)/.dev-installed
	$(VENV)/bin/bandit -q -c .bandit.yaml -r webapp
	$(PY) scripts/audit_dependencies.py -r requirements.txt -r requirements-dev.txt

venv: $(VENV)/.installed
dev: $(VENV)/.dev-installed

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Tools the tests drive, from Debian: Chromium for the browser tests (Playwright's own browser download
# cannot work offline), nginx for the reverse-proxy tests of deploy/nginx/, and promtool (in the
# prometheus package) for the alert rules of the docs.
test-tools:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian's$$missing for the tests"; \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# After changing user-visible text: extract it, merge into the catalogues, translate, then compile.
translations: $(VENV)/.installed
	$(VENV)/bin/pybabel extract --no-location -F babel.cfg -k _l -k lazy_gettext -k N_ -o webapp/translations/messages.pot .
	$(VENV)/bin/pybabel update --no-fuzzy-matching -i webapp/translations/messages.pot -d webapp/translations
	$(VENV)/bin/pybabel compile -d webapp/translations

clean:
	rm -rf $(VENV) .pytest_cache
