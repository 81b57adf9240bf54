#!/usr/bin/env python3
"""Structural checks of deploy/ that need neither Docker nor a Kubernetes cluster.

Each check states a property that `docker compose up` or `kubectl apply -k` would otherwise only
reveal at run time: references between objects resolve, probes hit /healthz, the StatefulSet's
headless service exists, the PDB and services select the pods, the one-shot services run in the
right order, the alert rules and the dashboard queries are well formed. Exit status 0 only if
every check passed; the last line is "N passed, M failed".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
RESULTS = {"passed": 0, "failed": 0}


def check(name: str, condition: bool, detail: str = "") -> None:
    if condition:
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name} {detail}")


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def check_kubernetes() -> None:
    k8s = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for resource in kustomization["resources"]:
        path = k8s / resource
        check(f"kustomization resource {resource} exists", path.exists())
        if path.exists():
            docs.extend(load_all(path))
    secrets = load_all(k8s / "secret.example.yaml")
    for doc in docs + secrets:
        check(
            f"{doc.get('kind')} {doc.get('metadata', {}).get('name')} has apiVersion, kind, name",
            bool(doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name")),
        )
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs + secrets:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    statefulset = by_kind["StatefulSet"]["rekor-node"]
    spec = statefulset["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    check("StatefulSet selector matches its pod labels",
          all(pod_labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()))
    headless = by_kind["Service"].get(spec["serviceName"])
    check("StatefulSet serviceName is a headless Service",
          headless is not None and headless["spec"].get("clusterIP") == "None")
    check("headless Service exposes the internal port 3001",
          headless is not None and any(p["port"] == 3001 for p in headless["spec"]["ports"]))
    for service in by_kind["Service"].values():
        check(f"Service {service['metadata']['name']} selects the pods",
              all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items()))
    container = spec["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container.get(probe, {}).get("httpGet", {})
        check(f"{probe} is GET /healthz on a declared port",
              http.get("path") == "/healthz" and http.get("port") in port_names)
    for service in by_kind["Service"].values():
        for port in service["spec"]["ports"]:
            check(f"Service {service['metadata']['name']} targets a declared port ({port['targetPort']})",
                  port["targetPort"] in port_names)
    secret_volumes = [v["secret"]["secretName"] for v in spec["template"]["spec"]["volumes"] if "secret" in v]
    check("the pods mount the rekor-node Secret", secret_volumes == ["rekor-node"])
    secret = by_kind["Secret"].get("rekor-node", {})
    config = by_kind["ConfigMap"]["rekor-node"]["data"]
    for key in ("REKOR_SIGNING_KEY", "REKOR_CLUSTER_SECRET_FILE"):
        file_name = Path(config[key]).name
        check(f"{key} names a file of the Secret ({file_name})", file_name in secret.get("stringData", {}))
    check("a cluster member does not bootstrap alone", config.get("REKOR_BOOTSTRAP_SINGLE") == "false")
    pdb = by_kind["PodDisruptionBudget"]["rekor-node"]
    check("PodDisruptionBudget selects the pods",
          all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()))
    check("PodDisruptionBudget keeps a quorum of 3 (maxUnavailable 1)", pdb["spec"].get("maxUnavailable") == 1)
    check("StatefulSet runs 3 voters", spec["replicas"] == 3)
    job = by_kind["Job"]["rekor-node-init"]
    job_args = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    check("the init Job names one member per replica", job_args.count("--member") == spec["replicas"])
    check("the pods run as non-root", spec["template"]["spec"]["securityContext"].get("runAsNonRoot") is True)


def check_compose() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    for name in ("s3", "setup", "node1", "node2", "node3", "init"):
        check(f"compose service {name} exists", name in services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            check(f"compose {name}: volume {source} is declared", source in volumes)
        for dependency in service.get("depends_on", {}):
            check(f"compose {name}: depends on existing {dependency}", dependency in services)
    for node in ("node1", "node2", "node3"):
        service = services[node]
        check(f"compose {node} waits for setup to complete",
              service["depends_on"]["setup"]["condition"] == "service_completed_successfully")
        check(f"compose {node} runs serve", service["command"][0] == "serve")
        check(f"compose {node} does not publish the internal port",
              all(not str(port).endswith(":3001") for port in service.get("ports", [])))
        check(f"compose {node} has its own tile-store prefix",
              f"s3://rekor/{node}" in service["command"])
    for node in ("node1", "node2", "node3"):
        check(f"compose init waits for {node} to be healthy",
              services["init"]["depends_on"][node]["condition"] == "service_healthy")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for service in services.values():
        target = service.get("build", {}).get("target")
        if target:
            check(f"Dockerfile has the stage {target}", f" AS {target}\n" in dockerfile)
    check("Dockerfile has a HEALTHCHECK on /healthz", "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile)
    check("Dockerfile runs as a non-root user", "\nUSER 10001\n" in dockerfile)
    check("Dockerfile exposes both ports", "EXPOSE 3000 3001" in dockerfile)


def check_prometheus() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config.get("rule_files", []):
        path = DEPLOY / "prometheus" / rule_file
        check(f"rule file {rule_file} exists", path.exists())
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                check(f"alert {rule.get('alert')} has expr and summary",
                      bool(rule.get("expr")) and bool(rule.get("annotations", {}).get("summary")))
    for job in config["scrape_configs"]:
        check(f"scrape job {job['job_name']} scrapes /metrics", job.get("metrics_path", "/metrics") == "/metrics")


def check_grafana() -> None:
    for path in (DEPLOY / "grafana").glob("*.json"):
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        check(f"{path.name}: panel ids are unique", len(ids) == len(set(ids)))
        for panel in dashboard["panels"]:
            targets = panel.get("targets", [])
            check(f"{path.name}: panel {panel['title']!r} has queries",
                  bool(targets) and all(t.get("expr") for t in targets))
            check(f"{path.name}: panel {panel['title']!r} fits the 24-column grid",
                  panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24)


def main() -> int:
    for part in (check_kubernetes, check_compose, check_prometheus, check_grafana):
        try:
            part()
        except Exception as error:  # a missing key is a failed check, not a crash
            check(part.__name__, False, f"raised {error!r}")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
