#!/usr/bin/env bash
# Validates deploy/ with the tools that run without Docker or a Kubernetes cluster:
#   - yamllint over every YAML file (deploy/.yamllint; Helm templates are checked rendered);
#   - deploy/check_deploy.py: a structural check of the compose file, the Kubernetes manifests,
#     the two image definitions (Dockerfile and image/Containerfile agree), the Prometheus files
#     and the Grafana dashboard (PyYAML, json);
#   - deploy/check_chart.py: the Helm chart helm/rekor-raft, rendered by `helm template` for 3 and
#     5 voters with volumes or a bucket, against the Kubernetes schemas (kubernetes-validate,
#     offline) and structurally, `helm lint`, and values the chart's schema must refuse; also the
#     kustomized deploy/kubernetes against the same schemas.
# The flags, environment variables, config keys and metric names that deploy/ uses are checked
# against the real binary by cluster-tests/tests/ops_deploy.rs, and the image is built and run by
# cluster-tests/tests/container_image.rs (both part of `cargo test`).
#
# Installs deploy/requirements.txt into .tools/deploy-venv (git-ignored) on first use. helm (and
# kubectl) come from scripts/test.sh --setup into .tools/bin; without helm the chart checks fail
# under CI and are skipped, with a notice, elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# check_chart.py imports check_deploy.py: no __pycache__ in the tree.
export PYTHONDONTWRITEBYTECODE=1
venv=.tools/deploy-venv
if ! "$venv/bin/python" -c 'import yaml, yamllint, kubernetes_validate' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt
fi
"$venv/bin/yamllint" --strict -c deploy/.yamllint deploy/
"$venv/bin/python" deploy/check_deploy.py
helm=${HELM:-.tools/bin/helm}
if [ -x "$helm" ] || [ -n "${CI:-}" ]; then
  HELM=$helm "$venv/bin/python" deploy/check_chart.py
else
  echo "SKIPPED: the Helm chart checks (no $helm; scripts/test.sh --setup installs it)"
fi
