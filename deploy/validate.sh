#!/usr/bin/env bash
# Validates deploy/ with the tools that run without Docker or a Kubernetes cluster:
#   - yamllint over every YAML file (deploy/.yamllint);
#   - deploy/check_deploy.py: a structural check of the compose file, the Kubernetes manifests,
#     the Prometheus files and the Grafana dashboard (PyYAML, json).
# The flags, environment variables, config keys and metric names that deploy/ uses are checked
# against the real binary by cluster-tests/tests/ops_deploy.rs (part of `cargo test`).
#
# Installs yamllint and PyYAML into .tools/deploy-venv (git-ignored) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/deploy-venv
if ! "$venv/bin/python" -c 'import yaml, yamllint' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check yamllint==1.38.0 pyyaml==6.0.3
fi
"$venv/bin/yamllint" --strict -c deploy/.yamllint deploy/
"$venv/bin/python" deploy/check_deploy.py
