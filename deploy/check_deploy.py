#!/usr/bin/env python3
"""Structural checks of deploy/ that need neither Docker nor a Kubernetes cluster.

Each check states a property that `docker compose up` or `kubectl apply -k` would otherwise only
reveal at run time: references between objects resolve, liveness probes hit /livez and readiness
/healthz, deploy/Dockerfile and deploy/image/Containerfile make the same image, the StatefulSet's
headless service exists, the PDB and services select the pods, the one-shot services run in the
right order, every node gets its own certificate for mutual TLS (and nothing gets the CA key), the
alert rules and the dashboard queries are well formed. Exit status 0 only if
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
    check_probes("StatefulSet", container)
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
    check_kubernetes_tls(k8s, spec, container, config, job, secrets)


# Liveness and start-up ask whether the process serves HTTP (/livez); readiness asks for a quorum
# and a working tile store (/healthz). A liveness probe on /healthz would restart every node of a
# cluster that lost its quorum, or that was never initialised.
PROBE_PATHS = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/healthz"}


def check_probes(owner: str, container: dict) -> None:
    port_names = {p["name"] for p in container["ports"]}
    for probe, path in PROBE_PATHS.items():
        http = container.get(probe, {}).get("httpGet", {})
        check(f"{owner}: {probe} is GET {path} on a declared port",
              http.get("path") == path and http.get("port") in port_names, str(http))


def projected_files(volume: dict) -> dict[str, str]:
    """File name in a projected volume -> "secret/key" it comes from."""
    files = {}
    for source in volume.get("projected", {}).get("sources", []):
        secret = source.get("secret", {})
        for item in secret.get("items", []):
            files[item["path"]] = f"{secret['name']}/{item['key']}"
    return files


def tls_volume(pod_spec: dict, container: dict, mount_path: str) -> dict:
    names = [m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == mount_path]
    volumes = [v for v in pod_spec.get("volumes", []) if v["name"] in names]
    return volumes[0] if volumes else {}


def check_kubernetes_tls(k8s: Path, spec: dict, container: dict, config: dict, job: dict, secrets: list[dict]) -> None:
    """Mutual TLS: each pod finds its own node's certificate, the init Job an operator's, and the
    example cert-manager Certificates issue exactly those."""
    pod_spec = spec["template"]["spec"]
    ca_file = config.get("REKOR_INTERNAL_TLS_CA_FILE", "")
    mount = str(Path(ca_file).parent)
    volume = tls_volume(pod_spec, container, mount)
    files = projected_files(volume)
    check("the pods mount the CA bundle REKOR_INTERNAL_TLS_CA_FILE names",
          files.get(Path(ca_file).name) == "rekor-node-ca/ca.pem", f"{ca_file}: {files}")
    check("the TLS volume is not readable by others (0440)", volume.get("projected", {}).get("defaultMode") == 0o440)
    args = " ".join(container["args"])
    check("serve gets the pod's own certificate and key",
          f'--internal-tls-cert-file "{mount}/node-${{id}}.pem"' in args
          and f'--internal-tls-key-file "{mount}/node-${{id}}-key.pem"' in args
          and 'id="$((ordinal + 1))"' in args)
    node_secrets = {}
    for node_id in range(1, spec["replicas"] + 1):
        cert, key = files.get(f"node-{node_id}.pem", ""), files.get(f"node-{node_id}-key.pem", "")
        check(f"the TLS volume holds node {node_id}'s certificate and key from one Secret",
              cert.endswith("/tls.crt") and key.endswith("/tls.key") and cert.split("/")[0] == key.split("/")[0],
              f"{cert} {key}")
        node_secrets[node_id] = cert.split("/")[0]
    job_spec = job["spec"]["template"]["spec"]
    job_container = job_spec["containers"][0]
    job_env = {e["name"]: e.get("value") for e in job_container.get("env", [])}
    job_files = projected_files(tls_volume(job_spec, job_container, mount))
    for variable in ("REKOR_ADMIN_TLS_CA_FILE", "REKOR_ADMIN_TLS_CERT_FILE", "REKOR_ADMIN_TLS_KEY_FILE"):
        path = job_env.get(variable) or ""
        check(f"the init Job's {variable} is a file of its TLS volume",
              Path(path).parent == Path(mount) and Path(path).name in job_files, f"{path}: {job_files}")
    operator_secret = job_files.get(Path(job_env.get("REKOR_ADMIN_TLS_CERT_FILE") or "x").name, "/").split("/")[0]
    check("the CA bundle has a Secret of its own (no CA key in it)",
          any(d["kind"] == "Secret" and d["metadata"]["name"] == "rekor-node-ca" and "ca.pem" in d.get("stringData", {})
              and not any("key" in name for name in d.get("stringData", {})) for d in secrets))

    examples = load_all(k8s / "certificates.example.yaml")
    issuers = {d["metadata"]["name"] for d in examples if d["kind"] == "Issuer"}
    certificates = {d["spec"]["secretName"]: d["spec"] for d in examples if d["kind"] == "Certificate"}
    for doc in examples:
        if doc["kind"] == "Certificate":
            check(f"Certificate {doc['metadata']['name']} is issued by an Issuer of the file",
                  doc["spec"]["issuerRef"]["name"] in issuers)
    for node_id, secret in node_secrets.items():
        cert = certificates.get(secret, {})
        check(f"a Certificate writes {secret} naming node {node_id} for server and client auth",
              cert.get("uris") == [f"urn:rekor-raft:node:{node_id}"]
              and {"server auth", "client auth"} <= set(cert.get("usages", [])), str(cert))
    operator = certificates.get(operator_secret, {})
    check(f"a Certificate writes {operator_secret} naming an operator for client auth",
          len(operator.get("uris", [])) == 1 and operator["uris"][0].startswith("urn:rekor-raft:operator:")
          and "client auth" in operator.get("usages", []), str(operator))


def check_compose() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    for name in ("s3", "setup", "certs", "node1", "node2", "node3", "init"):
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
        node_id = node[-1]
        check(f"compose {node} waits for its certificates",
              service["depends_on"]["certs"]["condition"] == "service_completed_successfully")
        check(f"compose {node} mounts only its own certificate volume (not the CA key's)",
              f"{node}-tls:/etc/rekor-tls:ro" in service["volumes"]
              and not any(v.startswith(("cluster-ca:", "admin-tls:")) for v in service["volumes"]))
        command = service["command"]
        check(f"compose {node} serves with node {node_id}'s certificate",
              command[command.index("--node-id") + 1] == node_id
              and f"/etc/rekor-tls/node-{node_id}.pem" in command
              and f"/etc/rekor-tls/node-{node_id}-key.pem" in command)
        check(f"compose {node} trusts the cluster CA",
              service["environment"].get("REKOR_INTERNAL_TLS_CA_FILE") == "/etc/rekor-tls/ca.pem")
    certs = services["certs"]
    certs_command = certs["command"][0]
    check("compose certs issues node 1-3 and the operator admin",
          "rekor-node certs --dir /ca --node-ids 1,2,3 --operator admin" in certs_command)
    check("compose certs fills each node's volume",
          all(f"{node}-tls:/tls/{node}" in certs["volumes"] for node in ("node1", "node2", "node3")))
    init_env = services["init"]["environment"]
    check("compose init calls the nodes with the operator certificate",
          "admin-tls:/etc/rekor-tls:ro" in services["init"]["volumes"]
          and init_env.get("REKOR_ADMIN_TLS_CERT_FILE") == "/etc/rekor-tls/operator-admin.pem"
          and init_env.get("REKOR_ADMIN_TLS_KEY_FILE") == "/etc/rekor-tls/operator-admin-key.pem"
          and init_env.get("REKOR_ADMIN_TLS_CA_FILE") == "/etc/rekor-tls/ca.pem")
    for node in ("node1", "node2", "node3"):
        check(f"compose init waits for {node} to be healthy",
              services["init"]["depends_on"][node]["condition"] == "service_healthy")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for service in services.values():
        target = service.get("build", {}).get("target")
        if target:
            check(f"Dockerfile has the stage {target}", f" AS {target}\n" in dockerfile)


def image_instructions(text: str) -> dict[str, str]:
    """The runtime-defining instructions of a Dockerfile's last stage, continuation lines joined
    and whitespace normalised: instruction -> arguments (ENV and LABEL: all of them, in order)."""
    last_stage = text[text.rindex("\nFROM "):]
    joined = last_stage.replace("\\\n", " ")
    wanted = ("USER", "WORKDIR", "VOLUME", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT", "CMD", "ENV", "LABEL")
    found: dict[str, str] = {}
    for line in joined.splitlines():
        words = line.split()
        if words and words[0] in wanted:
            found[words[0]] = (found.get(words[0], "") + " " + " ".join(words[1:])).strip()
    return found


def check_images() -> None:
    """deploy/Dockerfile's runtime stage and deploy/image/Containerfile make the same image."""
    dockerfile = image_instructions((DEPLOY / "Dockerfile").read_text())
    containerfile = image_instructions((DEPLOY / "image" / "Containerfile").read_text())
    for instruction in sorted(set(dockerfile) | set(containerfile)):
        check(f"Dockerfile and image/Containerfile agree on {instruction}",
              dockerfile.get(instruction) == containerfile.get(instruction),
              f"{dockerfile.get(instruction)!r} != {containerfile.get(instruction)!r}")
    check("the image's HEALTHCHECK probes /livez", "/livez" in dockerfile.get("HEALTHCHECK", ""))
    check("the image runs as the non-root user 10001", dockerfile.get("USER") == "10001")
    check("the image exposes both ports", dockerfile.get("EXPOSE") == "3000 3001")
    check("the image's data directory is its volume",
          "REKOR_DATA_DIR=/var/lib/rekor" in dockerfile.get("ENV", "")
          and dockerfile.get("VOLUME") == '["/var/lib/rekor"]')


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
    for part in (check_kubernetes, check_compose, check_images, check_prometheus, check_grafana):
        try:
            part()
        except Exception as error:  # a missing key is a failed check, not a crash
            check(part.__name__, False, f"raised {error!r}")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
