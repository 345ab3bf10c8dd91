# The two entry points of a fresh machine: `make gate` and `make test`.
PY := .venv/bin/python
RELEASE ?= dev

.PHONY: gate test lint bootstrap

bootstrap:
	@scripts/bootstrap.sh

# The release gate against the embedded sandbox; the verdict is the exit code.
gate: bootstrap
	@$(PY) -m pytest suites -m go_nogo --spark-release $(RELEASE) -p no:cacheprovider; \
	  rc=$$?; echo "report: $$(cat reports/LATEST 2>/dev/null || echo '(no bundle written)')/report.html"; exit $$rc

# The project's own tests: the plugin (pytester), the sandbox and the defect matrix, on two
# workers; then, alone, the tests that judge latency (the canary rollout), so that the other
# worker's load is not what they measure.
test: bootstrap
	@$(PY) -m pytest tests -n 2 --dist loadgroup -p no:cacheprovider -m "not solo"
	@$(PY) -m pytest tests -p no:cacheprovider -m solo

lint: bootstrap
	@$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy
