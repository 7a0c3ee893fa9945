"""The rendered Kubernetes manifests: schema-valid, least privilege, hardened pods."""

from __future__ import annotations

import copy
import os

import kubernetes_validate
import pytest

from tests.conftest import REPO

# Oldest Kubernetes release the manifests promise to work on (CronJob timeZone is GA
# from 1.27), and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod")  # as rendered by conftest.py
OVERLAYS = ("overlays/dev", "overlays/prod")
READ_ONLY_VERBS = {"get", "list", "watch"}


def objects_of(objs: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objs if obj["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [obj for obj in objs if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[dict]) -> list[tuple[str, dict]]:
    """(kind/name, pod spec) of every workload that creates pods."""
    specs = []
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((name, obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            specs.append((name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append((name, obj["spec"]))
    return specs


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_is_valid_against_the_kubernetes_schema(rendered, kustomization, version):
    objs = rendered[kustomization]
    assert len(objs) >= 14
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_strict_validator_rejects_a_misspelt_field(rendered):
    deployment = copy.deepcopy(one(rendered["base"], "Deployment", "flywheel-serving"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_everything_lives_in_the_flywheel_namespace(rendered, kustomization):
    objs = rendered[kustomization]
    assert one(objs, "Namespace", "flywheel")
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "flywheel", obj["metadata"]["name"]
        assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"), "RBAC must stay namespaced"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_pod_runs_non_root_read_only_without_privileges(rendered, kustomization):
    specs = pod_specs(rendered[kustomization])
    assert {name for name, _ in specs} == {"Deployment/flywheel-serving", "Deployment/flywheel-dashboard", "CronJob/flywheel-monitor"}
    for name, spec in specs:
        pod_ctx = spec["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True, name
        assert pod_ctx["runAsUser"] == 10001, name
        assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for container in spec["containers"] + spec.get("initContainers", []):
            ctx = container["securityContext"]
            where = f"{name} container {container['name']}"
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx.get("privileged", False) is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert not ctx["capabilities"].get("add"), where
            resources = container["resources"]
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[section]), f"{where}: {section}"
            # A read-only root needs a writable /tmp.
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and not tmp[0].get("readOnly"), where


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_volume_mount_refers_to_a_volume_and_every_claim_exists(rendered, kustomization):
    objs = rendered[kustomization]
    claims = {obj["metadata"]["name"] for obj in objects_of(objs, "PersistentVolumeClaim")}
    for name, spec in pod_specs(objs):
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes, f"{name}: mount of unknown volume {mount['name']}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_serving_has_probes_port_and_a_read_only_registry(rendered, kustomization):
    objs = rendered[kustomization]
    deployment = one(objs, "Deployment", "flywheel-serving")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"].split("/")[-1].split(":")[0] == "flywheel-serving"
    assert [p["containerPort"] for p in container["ports"]] == [8501]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (8501, "http")
    command = container["command"]
    assert command[:2] == ["flywheel", "serve"]
    assert command[command.index("--registry") + 1] == "/models"
    assert command[command.index("--port") + 1] == "8501"
    # the monitor CronJob reads the logs over HTTP: the endpoint is on and its Host name allowed
    assert "--enable-logs-endpoint" in command
    allowed = {command[i + 1] for i, arg in enumerate(command) if arg == "--allowed-host"}
    assert "flywheel-serving" in allowed and "flywheel-serving.flywheel.svc.cluster.local" in allowed
    models = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
    assert models["readOnly"] is True
    tmp_volume = next(
        v for v in spec["volumes"]
        if v["name"] == next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    )
    assert "emptyDir" in tmp_volume

    service = one(objs, "Service", "flywheel-serving")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8501, "http")]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_serving_autoscales_on_cpu(rendered, kustomization):
    objs = rendered[kustomization]
    hpa = one(objs, "HorizontalPodAutoscaler", "flywheel-serving")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "flywheel-serving"
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    replicas = {"base": (2, 5), "overlays/dev": (1, 2), "overlays/prod": (3, 12)}[kustomization]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == replicas


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_monitor_cronjob_never_overlaps_and_checks_once(rendered, kustomization):
    cron = one(rendered[kustomization], "CronJob", "flywheel-monitor")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flywheel-monitor"
    (container,) = pod["containers"]
    assert container["image"].split("/")[-1].split(":")[0] == "flywheel"
    command = container["command"]
    assert command[:3] == ["flywheel", "monitor", "--once"]
    assert command[command.index("--registry") + 1] == "/models"
    # The monitor rolls back by rewriting the serving alias, so its registry mount is writable.
    models = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
    assert not models.get("readOnly")
    rules_path = command[command.index("--rules") + 1]
    rules = next(m for m in container["volumeMounts"] if rules_path.startswith(m["mountPath"] + "/"))
    assert rules["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == rules["name"])
    assert volume["configMap"]["name"].startswith("flywheel-alert-rules")


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_rbac_has_no_wildcards_and_bindings_resolve(rendered, kustomization):
    objs = rendered[kustomization]
    roles = {obj["metadata"]["name"]: obj for obj in objects_of(objs, "Role")}
    accounts = {obj["metadata"]["name"] for obj in objects_of(objs, "ServiceAccount")}
    assert {"flywheel-pipeline-runner", "flywheel-monitor"} <= set(roles)
    for name, role in roles.items():
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), f"Role {name} has a wildcard in {field}"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), name
            # Secrets only by name, never the whole namespace.
            if "secrets" in rule["resources"]:
                assert rule.get("resourceNames") and set(rule["verbs"]) <= READ_ONLY_VERBS
    for binding in objects_of(objs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] in roles
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["name"] in accounts
            assert subject["namespace"] == "flywheel"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_monitor_is_read_only_and_serving_has_no_api_access(rendered, kustomization):
    objs = rendered[kustomization]
    monitor = one(objs, "Role", "flywheel-monitor")
    for rule in monitor["rules"]:
        assert set(rule["verbs"]) <= READ_ONLY_VERBS, rule

    serving_sa = one(objs, "ServiceAccount", "flywheel-serving")
    assert serving_sa["automountServiceAccountToken"] is False
    deployment = one(objs, "Deployment", "flywheel-serving")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flywheel-serving"
    assert pod["automountServiceAccountToken"] is False
    bound = {
        subject["name"]
        for binding in objects_of(objs, "RoleBinding") + objects_of(objs, "ClusterRoleBinding")
        for subject in binding["subjects"]
    }
    assert "flywheel-serving" not in bound


def test_pipeline_runner_role_grants_what_kfp_steps_need(rendered):
    role = one(rendered["base"], "Role", "flywheel-pipeline-runner")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("argoproj.io", "workflowtaskresults", "create") in granted
    assert ("", "pods", "get") in granted
    assert ("", "configmaps", "get") in granted
    assert ("", "persistentvolumeclaims", "create") in granted
    # No write access to pods, and nothing beyond the core and Argo groups.
    assert not {verb for group, resource, verb in granted if resource == "pods"} - READ_ONLY_VERBS
    assert {group for group, _, _ in granted} == {"", "argoproj.io"}


def _resources(objs: list[dict]) -> dict[str, dict]:
    deployment = one(objs, "Deployment", "flywheel-serving")
    return deployment["spec"]["template"]["spec"]["containers"][0]["resources"]


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if str(value).endswith(suffix):
            return float(str(value)[: -len(suffix)]) * factor
    return float(value)


def test_dev_is_small_and_prod_is_bigger_and_pinned(rendered):
    dev, prod = rendered["overlays/dev"], rendered["overlays/prod"]
    dev_serving = one(dev, "Deployment", "flywheel-serving")
    prod_serving = one(prod, "Deployment", "flywheel-serving")
    assert dev_serving["spec"]["replicas"] == 1
    assert prod_serving["spec"]["replicas"] > 1
    dev_hpa = one(dev, "HorizontalPodAutoscaler", "flywheel-serving")["spec"]
    prod_hpa = one(prod, "HorizontalPodAutoscaler", "flywheel-serving")["spec"]
    assert dev_hpa["minReplicas"] == 1
    assert prod_hpa["minReplicas"] > dev_hpa["minReplicas"]
    assert prod_hpa["maxReplicas"] > dev_hpa["maxReplicas"]
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert _quantity(_resources(prod)[section][resource]) > _quantity(
                _resources(dev)[section][resource]
            ), f"{section}.{resource}"
    pdb = one(prod, "PodDisruptionBudget", "flywheel-serving")
    assert pdb["spec"]["minAvailable"] < prod_hpa["minReplicas"] + 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        prod_serving["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_overlay_images_carry_an_explicit_tag(rendered, kustomization):
    for name, spec in pod_specs(rendered[kustomization]):
        for container in spec["containers"]:
            image = container["image"]
            last = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or (":" in last and not last.endswith(":latest")), (
                f"{name}: image {image} must carry a pinned tag or digest"
            )


def test_prod_images_come_from_a_registry_at_a_release_version(rendered):
    for name, spec in pod_specs(rendered["overlays/prod"]):
        for container in spec["containers"]:
            repository, _, tag = container["image"].rpartition(":")
            assert "." in repository.split("/")[0], f"{name}: {container['image']} has no registry host"
            assert tag[0].isdigit() and tag.count(".") == 2, f"{name}: tag {tag!r} is not a release"


def test_the_cluster_alert_rules_load():
    from flywheel.monitoring.rules import load_rules

    config = load_rules(os.path.join(REPO, "k8s", "base", "alert-rules.yaml"))
    assert {rule.action for rule in config.rules} == {"retrain", "rollback"}
    # retraining on the cluster mounts the registry claim the serving Deployment reads
    assert config.retrain.registry_pvc == "flywheel-data"
    assert config.retrain.service_account == "flywheel-pipeline-runner"


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_serving_and_monitor_share_the_object_store_with_credentials_from_a_secret(rendered, kustomization):
    objs = rendered[kustomization]
    serving = one(objs, "Deployment", "flywheel-serving")["spec"]["template"]["spec"]["containers"][0]
    cron = one(objs, "CronJob", "flywheel-monitor")
    monitor = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    secrets = {s["metadata"]["name"] for s in objects_of(objs, "Secret")}
    for container in (serving, monitor):
        env = _env(container)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref["key"] == key and ref["name"].startswith("flywheel-object-store")
            if kustomization == "overlays/dev":  # dev generates it; other environments bring their own
                assert ref["name"] in secrets
            assert "value" not in env[key]
        assert env["FLYWHEEL_SERVING_LOG_URI"]["valueFrom"]["configMapKeyRef"]["key"] == "serving-log-uri"
        assert env["FLYWHEEL_S3_ENDPOINT_URL"]["valueFrom"]["configMapKeyRef"]["key"] == "s3-endpoint"
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # every replica's logs reach the monitor from the object store, not one replica through the Service
    assert "--endpoint" not in monitor["command"]
    config = one(objs, "ConfigMap", "flywheel-config")["data"]
    assert config["serving-log-uri"].startswith(("s3://", "minio://", "gs://"))
    assert not any("secret" in k.lower() or "minio123" in str(v) for k, v in config.items())
    if kustomization == "base":
        assert not secrets  # no credentials in the base


def test_the_cluster_retrain_data_is_a_uri_every_pod_can_read():
    from flywheel.monitoring.rules import load_rules

    config = load_rules(os.path.join(REPO, "k8s", "base", "alert-rules.yaml"))
    assert config.retrain.parameters["data_path"].startswith(("newest:s3://", "newest:minio://", "newest:gs://"))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_dashboard_reads_kfp_and_the_registry_from_the_config_without_cluster_api_access(rendered, kustomization):
    objs = rendered[kustomization]
    deployment = one(objs, "Deployment", "flywheel-dashboard")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:2] == ["flywheel", "ui"]
    assert container["command"][container["command"].index("--host") + 1] == "0.0.0.0"
    env = _env(container)
    config = one(objs, "ConfigMap", "flywheel-config")["data"]
    for variable, key in (("FLYWHEEL_KFP_HOST", "kfp-host"), ("FLYWHEEL_REGISTRY", "registry-uri"),
                          ("FLYWHEEL_S3_ENDPOINT_URL", "s3-endpoint")):
        ref = env[variable]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "flywheel-config" and ref["key"] == key and key in config, variable
    assert config["kfp-host"].startswith("http://ml-pipeline.kubeflow")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == key and ref["name"].startswith("flywheel-object-store") and "value" not in env[key]
    # Probes hit /healthz, which touches no store and no KFP API.
    assert container["livenessProbe"]["httpGet"]["path"] == container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    port = container["ports"][0]
    service = one(objs, "Service", "flywheel-dashboard")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "flywheel-dashboard"}
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    # The registry claim is mounted read-only; the only token is a projected one for the KFP API.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["data"]["persistentVolumeClaim"]["readOnly"] is True and mounts["data"]["readOnly"] is True
    (source,) = volumes["kfp-token"]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    token_path = container["command"][container["command"].index("--kfp-token-file") + 1]
    assert token_path == f"{mounts['kfp-token']['mountPath']}/{source['serviceAccountToken']['path']}"
    assert pod["serviceAccountName"] == "flywheel-dashboard" and pod["automountServiceAccountToken"] is False
    assert one(objs, "ServiceAccount", "flywheel-dashboard")["automountServiceAccountToken"] is False
    bound = {subject["name"] for binding in objects_of(objs, "RoleBinding") for subject in binding["subjects"]}
    assert "flywheel-dashboard" not in bound


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_shared_volume_is_read_write_many_everywhere(rendered, kustomization):
    """push (a KFP step), serving, the monitor and the dashboard mount flywheel-data at once, from any node."""
    objs = rendered[kustomization]
    claim = one(objs, "PersistentVolumeClaim", "flywheel-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    mounting = [name for name, spec in pod_specs(objs)
                if any(v.get("persistentVolumeClaim", {}).get("claimName") == "flywheel-data" for v in spec["volumes"])]
    assert sorted(mounting) == ["CronJob/flywheel-monitor", "Deployment/flywheel-dashboard", "Deployment/flywheel-serving"]


def test_cluster_retraining_steps_get_the_object_store_serving_and_the_monitor_use(rendered):
    """The compiled retraining run names the Secret literally: dev's must carry exactly that name."""
    from flywheel.monitoring.rules import load_rules

    retrain = load_rules(os.path.join(REPO, "k8s", "base", "alert-rules.yaml")).retrain
    for kustomization in KUSTOMIZATIONS:
        objs = rendered[kustomization]
        config = one(objs, "ConfigMap", "flywheel-config")["data"]
        assert retrain.object_store_endpoint == config["s3-endpoint"], kustomization
        monitor = one(objs, "CronJob", "flywheel-monitor")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        ref = _env(monitor["containers"][0])["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == retrain.object_store_secret, kustomization
    assert one(rendered["overlays/dev"], "Secret", retrain.object_store_secret)["type"] == "Opaque"
