#!/usr/bin/env python3
"""Checks of the Helm chart deploy/helm/rekor-raft that run without a Kubernetes cluster.

For each variant of values (3 and 5 voters; tiles in the pods' volumes or in a bucket; public
HTTPS, a metrics listener and a ServiceMonitor) it renders the chart with `helm template` and
checks the output:
  - against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail), except
    the ServiceMonitor, a CRD, which is checked structurally;
  - structurally, with check_deploy.py's helpers: references between objects resolve (Services,
    ConfigMaps, Secrets, volumes, ports), liveness and start-up probes are /livez and readiness is
    /healthz on a declared port, pod N is node N+1 with its own certificate and a stable name
    under the headless Service, the init Job lists exactly those voters and targets node 1, the
    PodDisruptionBudget and anti-affinity select the pods, the serve flags mirror
    deploy/kubernetes/statefulset.yaml's.
Then the negative checks: values the schema must refuse (4 voters, a bucket URL of an unknown
scheme, a misspelt key) make `helm template` fail, and a rendering broken on purpose makes the
structural checks fail. `helm lint` runs on the 3- and 5-voter values.

Needs `helm` ($HELM, or .tools/bin/helm: scripts/test.sh installs it) and the packages of
deploy/requirements.txt. Exit status 0 only if every check passed.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

from check_deploy import DEPLOY, RESULTS, check, check_probes, load_all, projected_files, tls_volume

CHART = DEPLOY / "helm" / "rekor-raft"
RELEASE = "rekor"
NAMESPACE = "transparency"
KUBERNETES_VERSION = "1.30.0"
# Kinds whose schema kubernetes-validate does not have (custom resources): checked structurally.
CUSTOM_KINDS = {"ServiceMonitor"}

VARIANTS: dict[str, dict] = {
    "3 voters, tiles in the volumes": {},
    "5 voters, tiles in the volumes": {"replicas": 5},
    "3 voters, tiles in a bucket": {
        "tileStore": {"url": "s3://rekor-tiles/log", "env": {"AWS_REGION": "eu-west-1"},
                      "credentialsSecret": "rekor-s3"},
    },
    "5 voters, bucket, HTTPS, metrics listener, ServiceMonitor, hard anti-affinity": {
        "replicas": 5,
        "tileStore": {"url": "gs://rekor-tiles", "credentialsSecret": ""},
        "tls": {"public": {"enabled": True, "secretName": "log-example-com"}},
        "metrics": {"port": 9464, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "podAntiAffinity": "hard",
        "persistence": {"size": "50Gi", "storageClassName": "fast"},
    },
    "3 voters, one shared bucket prefix": {
        "tileStore": {"url": "s3://rekor-tiles/log", "shared": True, "credentialsSecret": "rekor-s3"},
    },
    "3 voters, a read listener": {"readListener": {"port": 3003}},
    "3 voters, HTTPS, ServiceMonitor on the public port": {
        "tls": {"public": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
}

# Values the schema must refuse, with a word its error must name.
REFUSED: dict[str, tuple[dict, str]] = {
    "4 voters": ({"replicas": 4}, "replicas"),
    "1 voter": ({"replicas": 1}, "replicas"),
    "a bucket URL of an unknown scheme": ({"tileStore": {"url": "ftp://tiles/log"}}, "url"),
    "a misspelt key": ({"replica": 3}, "replica"),
    "a read listener on the public port": ({"readListener": {"port": 3000}}, "port"),
    "a shared tile store in the pods' own volumes": ({"tileStore": {"url": "", "shared": True}}, "url"),
    "an origin with a scheme": ({"origin": "https://log.example.com"}, "origin"),
}


def helm() -> str:
    path = os.environ.get("HELM") or str(DEPLOY.parent / ".tools" / "bin" / "helm")
    if not Path(path).exists():
        sys.exit(f"helm not found at {path}: scripts/test.sh --setup installs it (or set HELM)")
    return path


def render(values: dict) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        return subprocess.run(
            [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", file.name],
            capture_output=True, text=True, check=False)


def merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def by_kind(docs: list[dict]) -> dict[str, dict[str, dict]]:
    kinds: dict[str, dict[str, dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return kinds


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def schema_check(variant: str, docs: list[dict]) -> None:
    for doc in docs:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            check(f"[{variant}] {name} fits the Kubernetes {KUBERNETES_VERSION} schema", True)
        except kubernetes_validate.ValidationError as error:
            check(f"[{variant}] {name} fits the Kubernetes {KUBERNETES_VERSION} schema", False,
                  f"{error.message} at {list(error.path)}")
        except kubernetes_validate.SchemaNotFoundError as error:
            check(f"[{variant}] {name} has a schema", False, str(error))


def serve_flags(args: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", args))


def structure_check(variant: str, values: dict, docs: list[dict]) -> None:
    """The rendered chart holds together. `values` are the chart's defaults with the variant's."""
    tag = f"[{variant}]"
    kinds = by_kind(docs)
    replicas = values["replicas"]
    (sts,) = kinds["StatefulSet"].values()
    spec = sts["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"]["labels"]
    pod_spec = pod["spec"]
    (container,) = pod_spec["containers"]
    check(f"{tag} StatefulSet runs {replicas} voters", spec["replicas"] == replicas)
    check(f"{tag} StatefulSet selector matches its pod labels", selects(spec["selector"]["matchLabels"], pod_labels))
    headless = kinds["Service"].get(spec["serviceName"])
    check(f"{tag} serviceName is a headless Service that publishes not-ready pods",
          headless is not None and headless["spec"].get("clusterIP") == "None"
          and headless["spec"].get("publishNotReadyAddresses") is True)
    check(f"{tag} the headless Service carries the internal port 3001",
          headless is not None and any(p["port"] == 3001 for p in headless["spec"]["ports"]))
    port_names = {p["name"] for p in container["ports"]}
    for service in kinds["Service"].values():
        name = service["metadata"]["name"]
        check(f"{tag} Service {name} selects the pods", selects(service["spec"]["selector"], pod_labels))
        for port in service["spec"]["ports"]:
            check(f"{tag} Service {name} port {port['name']} targets a declared port",
                  port["targetPort"] in port_names)
    check_probes(f"{tag} StatefulSet", container)
    scheme = "HTTPS" if values["tls"]["public"]["enabled"] else "HTTP"
    check(f"{tag} probes use {scheme}",
          all(container[p]["httpGet"].get("scheme", "HTTP") == scheme
              for p in ("startupProbe", "livenessProbe", "readinessProbe")))
    check(f"{tag} the pods run as the image's non-root user",
          pod_spec["securityContext"].get("runAsNonRoot") is True and pod_spec["securityContext"].get("runAsUser") == 10001)

    # Shared settings: the ConfigMap exists, and the files it names are in mounted Secrets.
    config_name = next(e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e)
    config = kinds["ConfigMap"].get(config_name, {}).get("data", {})
    check(f"{tag} envFrom names the chart's ConfigMap", bool(config))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    for mount, name in mounts.items():
        check(f"{tag} mount {mount} is a declared volume or claim",
              name in volumes or name in {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]})

    def mounted_secret_file(path: str) -> str | None:
        """"secret/key" behind a file path of the container, if a Secret volume provides it."""
        directory, file_name = str(Path(path).parent), Path(path).name
        volume = volumes.get(mounts.get(directory, ""), {})
        if "secret" in volume:
            items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
            return f"{volume['secret']['secretName']}/{items[file_name]}" if file_name in items else None
        return projected_files(volume).get(file_name)

    check(f"{tag} the signing key comes from the Secret {values['secret']['name']}",
          mounted_secret_file(config["REKOR_SIGNING_KEY"]) == f"{values['secret']['name']}/signing-key.pem")
    check(f"{tag} the cluster secret comes from the Secret {values['secret']['name']}",
          mounted_secret_file(config["REKOR_CLUSTER_SECRET_FILE"]) == f"{values['secret']['name']}/cluster-secret")
    check(f"{tag} the CA bundle comes from the Secret {values['tls']['internal']['caSecret']}",
          mounted_secret_file(config["REKOR_INTERNAL_TLS_CA_FILE"]) == f"{values['tls']['internal']['caSecret']}/ca.pem")
    check(f"{tag} a cluster member does not bootstrap alone", config.get("REKOR_BOOTSTRAP_SINGLE") == "false")
    if values["tls"]["public"]["enabled"]:
        secret = values["tls"]["public"]["secretName"]
        check(f"{tag} HTTPS certificate and key come from the Secret {secret}",
              mounted_secret_file(config.get("REKOR_HTTP_TLS_CERT_FILE", "/x")) == f"{secret}/tls.crt"
              and mounted_secret_file(config.get("REKOR_HTTP_TLS_KEY_FILE", "/x")) == f"{secret}/tls.key")
    else:
        check(f"{tag} plain HTTP on the public port", "REKOR_HTTP_TLS_CERT_FILE" not in config)
    read_port = values.get("readListener", {}).get("port")
    if read_port:
        (api,) = [s for s in kinds["Service"].values() if s is not headless]
        check(f"{tag} the read listener listens on {read_port}, a container port, and a port of the client Service",
              config.get("REKOR_READ_LISTEN") == f"0.0.0.0:{read_port}"
              and {"name": "reads", "containerPort": read_port} in container["ports"]
              and any(p["name"] == "reads" and p["port"] == read_port for p in api["spec"]["ports"]))
    else:
        check(f"{tag} no read listener", "REKOR_READ_LISTEN" not in config and "reads" not in port_names)

    # Stable node ids: pod <sts>-N is node N+1, finds node-(N+1)'s certificate, advertises its
    # stable name, and (with a bucket) writes under its own prefix.
    args = " ".join(container["args"])
    check(f"{tag} the node id is the pod ordinal + 1",
          'ordinal="${POD_NAME##*-}"' in args and 'id="$((ordinal + 1))"' in args and '--node-id "${id}"' in args)
    headless_name = spec["serviceName"]
    check(f"{tag} the node advertises its stable name under the headless Service",
          f'--advertise-internal "${{POD_NAME}}.{headless_name}.${{POD_NAMESPACE}}.svc:3001"' in args
          and f'--advertise "${{POD_NAME}}.{headless_name}.${{POD_NAMESPACE}}.svc:3000"' in args)
    check(f"{tag} serve gets the pod's own certificate and key",
          '--internal-tls-cert-file "/etc/rekor-tls/node-${id}.pem"' in args
          and '--internal-tls-key-file "/etc/rekor-tls/node-${id}-key.pem"' in args)
    tls_files = projected_files(tls_volume(pod_spec, container, "/etc/rekor-tls"))
    prefix = values["tls"]["internal"]["nodeSecretPrefix"]
    for ordinal in range(replicas):
        node_id = ordinal + 1
        check(f"{tag} pod {sts['metadata']['name']}-{ordinal} finds node {node_id}'s certificate and key",
              tls_files.get(f"node-{node_id}.pem") == f"{prefix}{node_id}/tls.crt"
              and tls_files.get(f"node-{node_id}-key.pem") == f"{prefix}{node_id}/tls.key")
    check(f"{tag} the TLS volume holds no certificate beyond node {replicas}",
          f"node-{replicas + 1}.pem" not in tls_files)
    check(f"{tag} the TLS volume is readable by group 0 only (0440)",
          volumes["tls"]["projected"].get("defaultMode") == 0o440)
    url = values["tileStore"]["url"]
    shared = values["tileStore"].get("shared", False)
    if url and shared:
        check(f"{tag} every node shares {url}, written by the leader only",
              f'--tile-store "{url}"' in args and "--shared-tile-store" in args and f"{url}/node-" not in args)
    else:
        check(f"{tag} each node has its own tile store (no --shared-tile-store)", "--shared-tile-store" not in args)
    if url:
        if not shared:
            check(f"{tag} each node writes tiles under its own prefix of {url}", f'--tile-store "{url}/node-${{id}}"' in args)
        credentials = values["tileStore"]["credentialsSecret"]
        secret_refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        check(f"{tag} the bucket credentials come from {credentials or 'no Secret'}",
              secret_refs == ([credentials] if credentials else []))
        for name, value in values["tileStore"]["env"].items():
            check(f"{tag} the object store setting {name} reaches the pods", config.get(name) == value)
    else:
        check(f"{tag} tiles stay in the pod's volume (no --tile-store)", "--tile-store" not in args)
    (claim,) = spec["volumeClaimTemplates"]
    check(f"{tag} each pod gets a {values['persistence']['size']} volume at /var/lib/rekor",
          mounts.get("/var/lib/rekor") == claim["metadata"]["name"]
          and claim["spec"]["resources"]["requests"]["storage"] == values["persistence"]["size"])

    # The plain manifests and the chart run the node with the same flags.
    plain = yaml.safe_load((DEPLOY / "kubernetes" / "statefulset.yaml").read_text())
    plain_flags = serve_flags(" ".join(plain["spec"]["template"]["spec"]["containers"][0]["args"]))
    check(f"{tag} serve flags mirror deploy/kubernetes/statefulset.yaml",
          serve_flags(args) - {"--tile-store", "--shared-tile-store"} == plain_flags, f"{serve_flags(args)} vs {plain_flags}")
    plain_config = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())["data"]
    check(f"{tag} the ConfigMap sets what deploy/kubernetes/configmap.yaml sets",
          set(plain_config) - {"REKOR_ORIGIN"} <= set(config), str(set(plain_config) - set(config)))

    # Disruptions and placement.
    (pdb,) = kinds["PodDisruptionBudget"].values()
    check(f"{tag} the PodDisruptionBudget selects the pods", selects(pdb["spec"]["selector"]["matchLabels"], pod_labels))
    check(f"{tag} the PodDisruptionBudget keeps a quorum (maxUnavailable 1)",
          pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"])
    anti = pod_spec["affinity"]["podAntiAffinity"]
    if values["podAntiAffinity"] == "hard":
        terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    else:
        terms = [t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    check(f"{tag} {values['podAntiAffinity']} anti-affinity spreads the pods by host",
          len(terms) == 1 and terms[0]["topologyKey"] == "kubernetes.io/hostname"
          and selects(terms[0]["labelSelector"]["matchLabels"], pod_labels))

    check_init_job(tag, values, kinds, sts, pod_spec, container, config)
    check_service_monitor(tag, values, kinds, headless)


def check_init_job(tag: str, values: dict, kinds: dict, sts: dict, pod_spec: dict, container: dict,
                   config: dict) -> None:
    jobs = kinds.get("Job", {})
    check(f"{tag} one init Job", len(jobs) == 1)
    if len(jobs) != 1:
        return
    (job,) = jobs.values()
    check(f"{tag} the init Job is a post-install hook",
          job["metadata"].get("annotations", {}).get("helm.sh/hook") == "post-install")
    job_spec = job["spec"]["template"]["spec"]
    (job_container,) = job_spec["containers"]
    env = {e["name"]: e.get("value") for e in job_container.get("env", [])}
    sts_name = sts["metadata"]["name"]
    headless = sts["spec"]["serviceName"]
    hosts = [f"{sts_name}-{ordinal}.{headless}.{NAMESPACE}.svc" for ordinal in range(values["replicas"])]
    expected = " ".join(f"{i + 1}={host}:3001,{host}:3000" for i, host in enumerate(hosts))
    check(f"{tag} the init Job lists pod N as node N+1, every voter once", env.get("INIT_MEMBERS") == expected,
          f"{env.get('INIT_MEMBERS')!r} != {expected!r}")
    check(f"{tag} the init Job targets node 1's internal listener", env.get("REKOR_TARGET") == f"{hosts[0]}:3001")
    check(f"{tag} the init Job runs the same image as the nodes", job_container["image"] == container["image"])
    job_mounts = {m["mountPath"]: m["name"] for m in job_container["volumeMounts"]}
    job_volumes = {v["name"]: v for v in job_spec["volumes"]}
    script_volume = job_volumes.get(job_mounts.get("/scripts", ""), {})
    script_map = kinds["ConfigMap"].get(script_volume.get("configMap", {}).get("name", ""), {})
    script = (CHART / "files" / "init-cluster.sh").read_text()
    check(f"{tag} the init Job runs files/init-cluster.sh from a ConfigMap of the release",
          job_container.get("command") == ["sh", "/scripts/init-cluster.sh"]
          and script_map.get("data", {}).get("init-cluster.sh", "").strip() == script.strip())
    job_files = projected_files(tls_volume(job_spec, job_container, "/etc/rekor-tls"))
    operator = values["tls"]["internal"]["operatorSecret"]
    check(f"{tag} the init Job calls with the operator certificate of {operator}",
          job_files.get(Path(env.get("REKOR_ADMIN_TLS_CERT_FILE") or "x").name) == f"{operator}/tls.crt"
          and job_files.get(Path(env.get("REKOR_ADMIN_TLS_KEY_FILE") or "x").name) == f"{operator}/tls.key"
          and job_files.get(Path(env.get("REKOR_ADMIN_TLS_CA_FILE") or "x").name) == f"{values['tls']['internal']['caSecret']}/ca.pem")
    secret_volume = job_volumes.get(job_mounts.get("/etc/rekor", ""), {}).get("secret", {})
    check(f"{tag} the init Job gets the cluster secret and not the signing key",
          env.get("REKOR_CLUSTER_SECRET_FILE") == "/etc/rekor/cluster-secret"
          and secret_volume.get("secretName") == values["secret"]["name"]
          and [i["key"] for i in secret_volume.get("items", [])] == ["cluster-secret"])


def check_service_monitor(tag: str, values: dict, kinds: dict, headless: dict | None) -> None:
    monitors = kinds.get("ServiceMonitor", {})
    enabled = values["metrics"]["serviceMonitor"]["enabled"]
    check(f"{tag} a ServiceMonitor exactly when enabled", len(monitors) == (1 if enabled else 0))
    if not enabled or len(monitors) != 1 or headless is None:
        return
    (monitor,) = monitors.values()
    check(f"{tag} ServiceMonitor is monitoring.coreos.com/v1", monitor["apiVersion"] == "monitoring.coreos.com/v1")
    check(f"{tag} ServiceMonitor selects the headless Service (every pod, ready or not)",
          selects(monitor["spec"]["selector"]["matchLabels"], headless["metadata"]["labels"])
          and all(not selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
                  for s in kinds["Service"].values() if s is not headless))
    check(f"{tag} ServiceMonitor is in the release's namespace",
          monitor["spec"].get("namespaceSelector", {}).get("matchNames") == [NAMESPACE])
    (endpoint,) = monitor["spec"]["endpoints"]
    port_names = {p["name"] for p in headless["spec"]["ports"]}
    want_port = "metrics" if values["metrics"]["port"] else "public"
    check(f"{tag} ServiceMonitor scrapes /metrics on the {want_port} port",
          endpoint.get("port") == want_port and want_port in port_names and endpoint.get("path") == "/metrics")
    https = values["tls"]["public"]["enabled"] and not values["metrics"]["port"]
    check(f"{tag} ServiceMonitor scheme is {'https' if https else 'http'}",
          endpoint.get("scheme") == ("https" if https else "http"))
    for key, value in values["metrics"]["serviceMonitor"]["labels"].items():
        check(f"{tag} ServiceMonitor carries the label {key}", monitor["metadata"]["labels"].get(key) == value)


def schema_self_test(docs: list[dict]) -> None:
    """The schema check is strict: a misspelt field or a wrong type fails."""
    sts = copy.deepcopy(next(d for d in docs if d["kind"] == "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/livez"
    pdb = copy.deepcopy(next(d for d in docs if d["kind"] == "PodDisruptionBudget"))
    pdb["spec"]["maxUnavailable"] = [1]
    for name, doc in (("a misspelt probe field", sts), ("a list for maxUnavailable", pdb)):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            check(f"the schema check catches {name}", False, "validated")
        except kubernetes_validate.ValidationError:
            check(f"the schema check catches {name}", True)


def lint(values: dict, name: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        result = subprocess.run([helm(), "lint", "--strict", str(CHART), "--values", file.name],
                                capture_output=True, text=True, check=False)
    check(f"helm lint --strict ({name})", result.returncode == 0, result.stdout + result.stderr)


def self_test(defaults: dict, docs: list[dict]) -> None:
    """The structural checks catch a broken rendering: each mutation must make some check fail."""
    def breaks(mutate) -> bool:
        broken = copy.deepcopy(docs)
        mutate(by_kind(broken))
        saved = dict(RESULTS)
        sys.stdout, real = open(os.devnull, "w"), sys.stdout
        try:
            structure_check("broken", defaults, broken)
        except Exception:  # a broken rendering may also break the checker's assumptions
            RESULTS["failed"] += 1
        finally:
            sys.stdout.close()
            sys.stdout = real
        failed = RESULTS["failed"] > saved["failed"]
        RESULTS.update(saved)
        return failed

    def sts(kinds):
        return next(iter(kinds["StatefulSet"].values()))

    def container(kinds):
        return sts(kinds)["spec"]["template"]["spec"]["containers"][0]

    def pdb(kinds):
        return next(iter(kinds["PodDisruptionBudget"].values()))

    def job_env(kinds):
        return next(iter(kinds["Job"].values()))["spec"]["template"]["spec"]["containers"][0]["env"]

    mutations = {
        "a liveness probe on /healthz": lambda k: container(k)["livenessProbe"]["httpGet"].update(path="/healthz"),
        "a PodDisruptionBudget that selects nothing":
            lambda k: pdb(k)["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/instance": "other"}),
        "node ids from 0": lambda k: container(k).update(
            args=[container(k)["args"][0].replace("$((ordinal + 1))", "${ordinal}")]),
        "an init Job that forgets a voter": lambda k: [e.update(value=e["value"].rsplit(" ", 1)[0])
                                                        for e in job_env(k) if e["name"] == "INIT_MEMBERS"],
        "a Service port to an undeclared container port":
            lambda k: next(iter(k["Service"].values()))["spec"]["ports"][0].update(targetPort="nope"),
        "a missing node certificate": lambda k: sts(k)["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"].pop(),
    }
    for name, mutate in mutations.items():
        check(f"the structural checks catch {name}", breaks(mutate))


def main() -> int:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for variant, override in VARIANTS.items():
        values = merged(defaults, override)
        result = render(override)
        check(f"[{variant}] helm template renders", result.returncode == 0, result.stderr)
        if result.returncode != 0:
            continue
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        try:
            schema_check(variant, docs)
            structure_check(variant, values, docs)
        except Exception as error:  # a missing object is a failed check, not a crash
            check(f"[{variant}] structure", False, f"raised {error!r}")
        if variant == "3 voters, tiles in the volumes":
            self_test(values, docs)
            schema_self_test(docs)
    lint({}, "3 voters")
    lint({"replicas": 5, "tileStore": {"url": "s3://bucket/prefix"}}, "5 voters, bucket")
    for name, (override, word) in REFUSED.items():
        result = render(override)
        check(f"the schema refuses {name}", result.returncode != 0 and word in result.stderr,
              (result.stderr or "rendered without an error").strip()[:300])
    # The plain manifests through the same schemas (kubectl kustomize renders them, if present).
    kubectl = Path(helm()).with_name("kubectl")
    if kubectl.exists():
        result = subprocess.run([str(kubectl), "kustomize", str(DEPLOY / "kubernetes")],
                                capture_output=True, text=True, check=False)
        check("kubectl kustomize deploy/kubernetes renders", result.returncode == 0, result.stderr)
        schema_check("deploy/kubernetes", [d for d in yaml.safe_load_all(result.stdout) if d])
    else:
        check("kubectl (next to helm) renders deploy/kubernetes", not os.environ.get("CI"),
              f"no {kubectl}: scripts/test.sh --setup installs it")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
