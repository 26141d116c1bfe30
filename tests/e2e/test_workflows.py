"""avfleet's own workflows submitted with `argo submit --from workflowtemplate/...` on the
one-node cluster, as installed by `kubectl apply -k manifests/overlays/local`: Argo's controller
runs their steps on real pods from avfleet's images, Kubeflow's training-operator their
PyTorchJobs, against the overlay's S3 and Pushgateway (moto and Debian's Pushgateway behind
the overlay's Service names, tests/e2e/services.py). Each run's outputs are compared with the
same workflow under `avfleet local-run`: that keeps the local executor honest."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from avfleet.core import storage
from avfleet.dataset.build import MANIFEST
from tests.e2e import images, kubeflow, sparkop
from tests.e2e.argo import argo, argo_controller, avfleet_config
from tests.e2e.argo import missing as argo_missing
from tests.e2e.conftest import NS
from tests.e2e.services import BENCH, bench_agent, site_services
from tests.integration.conftest import DATE, SMALL, local_run

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FLEET = "s3://avfleet-fleet/e2e"
INDEX = "s3://avfleet-data/e2e/index"
HELDOUT_ROOT = "s3://avfleet-data/e2e/heldout"
ON_ONE_NODE = {
    # two PyTorchJob nodes of one gloo process each (world size 2, as local-run's torchrun)
    "nodes": "2",
    "gpus-per-node": "0",
    "procs-per-node": "1",
    "cpu-per-node": "250m",
    "memory-per-node": "3Gi",
}


@pytest.fixture(scope="module")
def site(installed):
    """avfleet installed, its site services, Argo's controller with avfleet's configuration
    (infra/argo) watching avfleet's namespace, the training-operator; the small fleet of the
    integration tests on the site's S3, indexed, and a held-out dataset built from it."""
    lacking = argo_missing() + kubeflow.missing()
    if lacking:
        pytest.skip("the workflows need " + ", ".join(lacking))
    cluster = installed
    with (
        site_services(cluster) as services,
        argo_controller(cluster, NS, avfleet_config()),
        kubeflow.training_operator(cluster),
        pytest.MonkeyPatch.context() as env,
    ):
        # The installed CronWorkflow would start a real nightly run at 02:00 UTC in the middle
        # of these tests; its runs here are submitted from it (argo submit --from cronwf/...).
        done = argo(cluster, "cron", "suspend", "nightly-mining", namespace=NS)
        assert done.returncode == 0, done.stderr
        for key, value in services.env().items():
            env.setenv(key, value)  # this host's avfleet (and local-run) use the site's S3
        avfleet("fleet", "generate", "--out", FLEET, "--seed", str(SMALL.seed),
                "--vehicles", str(SMALL.vehicles), "--minutes-per-day", str(SMALL.minutes_per_day),
                "--segment-s", str(SMALL.segment_s), "--start-date", DATE)  # fmt: skip
        avfleet(
            "index", "--recordings", FLEET, "--date", DATE, "--index", INDEX, "--engine", "loop"
        )
        heldout = avfleet("dataset", "build", "--index", INDEX, "--frames", "random:32",
                          "--out", HELDOUT_ROOT, "--labels", f"oracle:{FLEET}", "--seed", "9",
                          "--engine", "loop", "--json")  # fmt: skip
        bench_agent(cluster, images.IMAGES["avfleet"].ref, NS)
        yield cluster, services, json.loads(heldout)["uri"]


def avfleet(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "avfleet", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"avfleet {' '.join(args)}:\n{done.stderr[-3000:]}"
    return done.stdout


def start(cluster, template: str, params: dict[str, str]) -> str:
    """`argo submit --from workflowtemplate/<template> -p ...` (or --from `template` when it
    names its kind, e.g. cronwf/nightly-mining); the Workflow's name."""
    flags = [f for k, v in params.items() for f in ("-p", f"{k}={v}")]
    source = template if "/" in template else f"workflowtemplate/{template}"
    done = argo(cluster, "submit", "--from", source, *flags, "-o", "name", namespace=NS)
    assert done.stdout.strip(), done.stderr
    return done.stdout.strip().splitlines()[-1]


def finish(cluster, name: str, started: float, timeout_s: float = 1500) -> dict:
    """`argo wait`; the finished Workflow (the test fails, with its logs, unless it succeeded)."""
    argo(cluster, "wait", name, namespace=NS, timeout=timeout_s)
    run = json.loads(argo(cluster, "get", name, "-o", "json", namespace=NS).stdout)
    run["took_s"] = time.monotonic() - started
    if run["status"]["phase"] != "Succeeded":
        logs = argo(cluster, "logs", name, namespace=NS, timeout=60).stdout[-6000:]
        pytest.fail(f"{name}: {run['status']['phase']}: {run['status'].get('message')}\n{logs}")
    return run


def submit(cluster, template: str, params: dict[str, str]) -> dict:
    started = time.monotonic()
    return finish(cluster, start(cluster, template, params), started)


def kill_worker_after_checkpoint(cluster, job_prefix: str, run_uri: str, step: int) -> str:
    """Once `run_uri` has its checkpoint of `step`, delete the worker pod of the PyTorchJob
    named `job_prefix`-... (as a node lost would); its name."""
    marker = f"{run_uri}/checkpoints/step-{step:08d}/meta.json"
    deadline = time.monotonic() + 900
    while not storage.exists(marker):
        assert time.monotonic() < deadline, f"no checkpoint {marker} in 900 s"
        time.sleep(0.5)
    pods = json.loads(cluster.kubectl("-n", NS, "get", "pods", "-o", "json",
                                      "-l", "training.kubeflow.org/replica-type=worker"))  # fmt: skip
    (name,) = [
        p["metadata"]["name"] for p in pods["items"]
        if p["metadata"]["name"].startswith(job_prefix) and p["status"].get("phase") == "Running"
    ]  # fmt: skip
    cluster.kubectl("-n", NS, "delete", "pod", name, "--grace-period=0", "--force")
    return name


def outputs(run: dict) -> dict[str, str]:
    """Every step's output parameters, by step template (the last attempt's)."""
    out = {}
    for node in run["status"]["nodes"].values():
        # a templateRef's node (fleet-index's index-date in nightly-mining) names it there
        template = node.get("templateName") or (node.get("templateRef") or {}).get("template")
        for p in (node.get("outputs") or {}).get("parameters") or []:
            out[f"{template}.{p['name']}"] = p.get("value")
    return out


def assert_same_index(uri: str, reference: str, where: str) -> None:
    """DATE's frame rows under `uri` equal `reference`'s, row for row (all but the run id)."""
    from avfleet.index.table import IndexTable

    got, want = (IndexTable(u).read("frames", [DATE]).sort_values("frame_id", ignore_index=True)
                 for u in (uri, reference))  # fmt: skip
    columns = [c for c in want.columns if c != "run_id"]
    assert len(want) > 0 and got[columns].equals(want[columns]), where


def read_json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri))


CHECKPOINT_EVERY = 20
"""TrainConfig's default: 64 frames over two ranks of batch 8 are 4 steps an epoch, so 10
epochs checkpoint at steps 20 and 40 (and the end)."""
COMMON_TRAIN = {
    "index": INDEX,
    "frames": "random:64",
    "labels": f"oracle:{FLEET}",
    "members": "2",
    "epochs": "10",
    "group-sparsity": "0.01",
    "finetune-epochs": "1",
    "width": "1.0",
}
RUNS = "s3://avfleet-data/e2e/runs"


@pytest.fixture(scope="module")
def trained(site, tmp_path_factory):
    """The train workflow run twice on the same inputs: `argo submit` on the cluster (run
    `cluster`) and `avfleet local-run` on this host (run `local`)."""
    cluster, services, heldout = site
    on_cluster = {**COMMON_TRAIN, **ON_ONE_NODE, "heldout": heldout, "runs": RUNS,
                  "datasets": "s3://avfleet-data/e2e/datasets", "run-name": "cluster",
                  "pushgateway": "pushgateway.avfleet-local.svc.cluster.local:9091"}  # fmt: skip
    started = time.monotonic()
    name = start(cluster, "train", on_cluster)
    # the fault drill: the ensemble's worker pod deleted after its first checkpoint
    killed = kill_worker_after_checkpoint(cluster, "train-ensemble-", f"{RUNS}/cluster/ensemble",
                                          CHECKPOINT_EVERY)  # fmt: skip
    run = finish(cluster, name, started)
    run["killed"] = killed
    print(f"train on the cluster: {run['took_s']:.0f} s (worker {killed} deleted mid-run)")
    local = {**COMMON_TRAIN, "nodes": "1", "heldout": heldout, "runs": RUNS,
             "datasets": "s3://avfleet-data/e2e/datasets-local", "run-name": "local",
             "pushgateway": services.pushgateway}  # fmt: skip
    started = time.monotonic()
    done = local_run("workflows/train.yaml", local, tmp_path_factory.mktemp("train-wd"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"train under local-run: {time.monotonic() - started:.0f} s")
    return run, local


def test_train_runs_its_pytorchjobs_on_the_cluster_as_local_run_does(trained):
    """The same dataset version and, though the ensemble lost its worker pod mid-run and
    resumed from its checkpoint, the same models (mIoU equal to the last digit) as local-run."""
    run, local = trained
    pods = [n for n in run["status"]["nodes"].values() if n["type"] == "Pod"]
    assert pods and all(n["phase"] == "Succeeded" for n in pods)
    # the same frames and labels give the same content-named dataset version
    version = outputs(run)["build-dataset.dataset-uri"].rsplit("/", 1)[1]
    local_version = f"{local['datasets']}/{version}/{MANIFEST}"
    assert storage.exists(local_version), f"local-run built no {version} (the cluster's)"
    for kind in ("ensemble", "deployable"):
        mine = read_json(f"{RUNS}/cluster/{kind}/result.json")
        theirs = read_json(f"{RUNS}/local/{kind}/result.json")
        assert mine["steps"] == theirs["steps"] > 0
        if kind == "ensemble":  # its worker was lost: it resumed from a checkpoint
            assert mine["resumed_from"] is not None and theirs["resumed_from"] is None, mine
        a = read_json(f"{RUNS}/cluster/{kind}/model/evaluation.json")
        b = read_json(f"{RUNS}/local/{kind}/model/evaluation.json")
        print(f"{kind}: mIoU on the cluster {a['miou']:.6f}, under local-run {b['miou']:.6f}")
        assert a["miou"] == pytest.approx(b["miou"], abs=1e-6)
    assert read_json(f"{RUNS}/cluster/ensemble/model/arch.json")["members"] == 2


def test_deploy_validates_on_a_bench_pod_and_promotes_as_local_run_does(site, trained, tmp_path):
    cluster, services, heldout = site
    common = {
        "model-uri": f"{RUNS}/cluster/deployable/model",
        "validation": heldout,
        "bench-runs": "50",
        "bench-warmup": "5",
        # the local site's bench is ONNX Runtime (overlays/local/benches), which builds no fp16:
        # its agent refuses it (local-run's stand-in bench quietly measures fp32 instead)
        "bench-precision": "fp32",
        "triton-url": "",  # no Triton serves here yet: promote without telling one
    }
    # On the cluster, the site's own roots (the bench operator writes reports only under the
    # site's releases, its AVFLEET_REPORTS_PREFIX); local-run's beside them.
    site_roots = {
        "releases": "s3://avfleet-data/releases",
        "registry": "s3://avfleet-data/registry",
    }
    local_roots = {
        "releases": "s3://avfleet-data/e2e/local/releases",
        "engine-cache": "s3://avfleet-data/e2e/local/engines",
        "registry": "s3://avfleet-data/e2e/local/registry",
        "model-repo": "s3://avfleet-data/e2e/local/triton",
    }
    roots = {"cluster": site_roots, "local": local_roots}
    run = submit(cluster, "deploy", {**common,
                 "pushgateway": "pushgateway.avfleet-local.svc.cluster.local:9091"})  # fmt: skip
    print(f"deploy on the cluster: {run['took_s']:.0f} s")
    done = local_run("workflows/deploy.yaml",
                     {**common, **local_roots, "pushgateway": services.pushgateway},
                     tmp_path / "wd")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    from avfleet.deploy.registry import promoted

    mine, theirs = (promoted(roots[w]["registry"]) for w in ("cluster", "local"))
    assert mine["model_ref"] == theirs["model_ref"] == "dpe-scorer:1"
    assert mine["release_id"] == theirs["release_id"]
    validations = json.loads(cluster.kubectl("-n", NS, "get", "benchvalidations", "-o", "json"))
    (validation,) = validations["items"]
    assert validation["status"]["phase"] == "Succeeded"
    assert validation["status"]["bench"] == BENCH
    report = read_json(f"{roots['cluster']['releases']}/{mine['release_id']}/bench/"
                       f"{run['metadata']['name']}.json")  # fmt: skip
    assert report["verdict"]["passed"]


# A step that fails with `code` until it has run `failures` times, counting its attempts in an
# S3 object (each retry on the cluster is a new pod; the object is what they share).
FLAKY = """
import sys
from avfleet.core import storage
counter, failures, code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = int(storage.read_bytes(counter)) + 1 if storage.exists(counter) else 1
storage.atomic_write_text(counter, str(runs))
print(f"attempt {runs}", flush=True)
sys.exit(code if runs <= failures else 0)
"""


def drill_workflow(name: str, counter: str, failures: int, code: int, image: str) -> dict:
    """A Workflow of one step made by avfleet's own `cli_step` (its retryStrategy, deadline,
    security and S3 environment, as every CLI step of every avfleet workflow has), running
    FLAKY in the CLI image."""
    from hera.workflows import Steps, Workflow

    from avfleet.workflows import common as c

    settings = c.workflow_settings(name, "retry drill", {"image": (image, "CLI image")}, 900)
    with Workflow(generate_name=f"{name}-", **settings) as wf:
        step = c.cli_step("flaky", [counter, str(failures), str(code)])
        step.command = ["python3", "-c", FLAKY]
        with Steps(name="main"):
            step(name="flaky")
    doc = wf.to_dict()
    for p in doc["spec"]["arguments"]["parameters"]:
        p.pop("enum", None)  # the release's image enum: here the locally built one
    return doc


@pytest.mark.parametrize(
    ("code", "failures", "attempts", "phase"),
    [(75, 1, 2, "Succeeded"), (65, 1, 1, "Failed")],
    ids=["transient-is-retried", "permanent-is-not"],
)
def test_argo_retries_a_transient_exit_and_not_a_permanent_one(
    site, tmp_path, code, failures, attempts, phase
):
    cluster = site[0]
    image = images.IMAGES["avfleet"].ref
    counts = {}
    for where in ("cluster", "local"):
        counter = f"s3://avfleet-data/e2e/drill/{code}-{where}"
        doc = drill_workflow(f"drill-{code}", counter, failures, code, image)
        path = tmp_path / f"{where}.yaml"
        path.write_text(yaml.safe_dump(doc))
        if where == "cluster":
            done = argo(cluster, "submit", str(path), "--wait", "-o", "name",
                        namespace=NS, timeout=600)  # fmt: skip
            name = done.stdout.strip().splitlines()[-1]
            run = json.loads(argo(cluster, "get", name, "-o", "json", namespace=NS).stdout)
            assert run["status"]["phase"] == phase, run["status"].get("message")
            pods = [n for n in run["status"]["nodes"].values() if n["type"] == "Pod"]
            assert len(pods) == attempts, [p.get("message") for p in pods]
            (failed,) = [p for p in pods if p["phase"] != "Succeeded"]  # the one that exited `code`
            assert f"exit code {code}" in failed["message"], failed
        else:
            done = local_run(str(path), {}, tmp_path / "wd")
            assert (done.returncode == 0) == (phase == "Succeeded"), done.stderr[-2000:]
        counts[where] = int(storage.read_bytes(counter))
    assert counts == {"cluster": attempts, "local": attempts}


def test_fleet_index_runs_spark_executors_as_pods_and_survives_losing_one(site, tmp_path):
    """fleet-index without the spark-operator (spark-launch: client): the step is the driver,
    Spark's own Kubernetes scheduler makes the executor pods. The first executor is killed as
    soon as it runs; Spark replaces it, and the index is still exactly the loop engine's and
    local-run's (the SparkApplication, as spark-submit on this host)."""
    cluster, services, _ = site
    common = {"recordings": FLEET, "date": DATE}
    on_cluster = {**common, "index": "s3://avfleet-data/e2e/index-cluster",
                  "spark-launch": "client", "executor-cores": "1", "executor-memory": "1g",
                  "executor-cpu": "250m",
                  "pushgateway": "pushgateway.avfleet-local.svc.cluster.local:9091"}  # fmt: skip
    name = start(cluster, "fleet-index", on_cluster)
    started, executors, killed = time.monotonic(), set(), None
    while time.monotonic() - started < 900:
        pods = json.loads(cluster.kubectl("-n", NS, "get", "pods", "-l", "spark-role=executor",
                                          "-o", "json"))["items"]  # fmt: skip
        executors |= {p["metadata"]["name"] for p in pods}
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if killed is None and running:
            killed = running[0]["metadata"]["name"]
            cluster.kubectl("-n", NS, "delete", "pod", killed, "--grace-period=0", "--force")
        phase = json.loads(cluster.kubectl("-n", NS, "get", "workflow", name, "-o", "json"))[
            "status"
        ].get("phase")
        if phase not in (None, "Pending", "Running"):
            break
        time.sleep(1)
    run = json.loads(argo(cluster, "get", name, "-o", "json", namespace=NS).stdout)
    took = time.monotonic() - started
    print(f"fleet-index on the cluster: {took:.0f} s; executor pods {sorted(executors)}")
    if run["status"]["phase"] != "Succeeded":
        logs = argo(cluster, "logs", name, namespace=NS, timeout=60).stdout[-6000:]
        pytest.fail(f"fleet-index: {run['status'].get('message')}\n{logs}")
    assert killed is not None, "no executor pod ever ran"
    assert len(executors) >= 2, f"Spark did not replace the killed executor {killed}"
    steps = {n["templateName"] for n in run["status"]["nodes"].values() if n["type"] == "Pod"}
    assert steps == {"plan-index", "spark-client", "verify-index"}

    local = {**common, "index": "s3://avfleet-data/e2e/index-local",
             "s3-endpoint-url": services.s3_url, "pushgateway": services.pushgateway}  # fmt: skip
    done = local_run("workflows/fleet-index.yaml", local, tmp_path / "wd")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for where, uri in (("cluster", on_cluster["index"]), ("local", local["index"])):
        assert_same_index(uri, INDEX, where)


def test_fleet_index_runs_its_sparkapplication_through_the_spark_operator(site, tmp_path):
    """fleet-index as installed (spark-launch: operator): Argo creates the SparkApplication,
    Kubeflow's spark-operator submits it (its webhook gives the driver and executor pods
    avfleet's securityContext, volumes and S3 environment), and the index is exactly the loop
    engine's."""
    lacking = sparkop.missing()
    if lacking:
        pytest.skip("the spark-operator needs " + ", ".join(lacking))
    cluster = site[0]
    params = {"recordings": FLEET, "date": DATE, "index": "s3://avfleet-data/e2e/index-operator",
              "executor-cores": "1", "executor-memory": "1g", "executor-cpu": "250m",
              "pushgateway": "pushgateway.avfleet-local.svc.cluster.local:9091"}  # fmt: skip
    with sparkop.spark_operator(cluster, NS):
        run = submit(cluster, "fleet-index", params)
        apps = json.loads(cluster.kubectl("-n", NS, "get", "sparkapplications", "-o", "json"))
    print(f"fleet-index through the spark-operator: {run['took_s']:.0f} s")
    steps = {n["templateName"] for n in run["status"]["nodes"].values() if n["type"] == "Pod"}
    assert steps == {"plan-index", "spark-index", "verify-index"}, steps
    (app,) = [a for a in apps["items"] if a["metadata"]["labels"].get("avfleet.io/date") == DATE]
    assert app["status"]["applicationState"]["state"] == "COMPLETED", app["status"]
    assert int(app["status"]["executionAttempts"]) >= 1
    assert_same_index(params["index"], INDEX, "spark-operator")


MODEL_REPO = "s3://avfleet-data/models/triton"
"""The local site's model repository: the Triton pod's --model-repository (overlays/local)."""


@pytest.fixture
def triton(site):
    """The installed Triton Deployment scaled to one pod (`avfleet tritonserver` in avfleet's
    image, as overlays/local runs it), and back to none after."""
    cluster = site[0]
    cluster.kubectl("-n", NS, "scale", "deployment/triton", "--replicas=1")
    try:
        # its readiness is Triton's strict readiness: every model in the repository loaded
        try:
            cluster.kubectl("-n", NS, "rollout", "status", "deployment/triton",
                            "--timeout=300s", timeout=330)  # fmt: skip
        except RuntimeError as e:
            logs = cluster.kubectl("-n", NS, "logs", "deployment/triton", "--tail=60", check=False)
            pytest.fail(f"Triton's pod was not ready: {e}\n{logs[-4000:]}")
        yield cluster
    finally:
        cluster.kubectl("-n", NS, "scale", "deployment/triton", "--replicas=0")


@pytest.mark.timeout(2400)  # alone (-k nightly) it also starts the cluster and trains
def test_nightly_mining_scores_through_the_triton_pod_as_local_run_does(
    site, trained, tmp_path, request
):
    """`argo submit --from cronwf/nightly-mining` for a backfill date: index (spark-launch:
    client), score every frame through the Triton pod, select, publish the queue. The ensemble
    the train workflow made on the cluster is published as publish-model does for the local
    site (KIND_CPU) before Triton starts (explicit mode: it loads the repository at start).
    local-run mines the same date with the same version in process (ONNX Runtime on the same
    model.onnx): the same selection and the same queue."""
    cluster, services, _ = site
    ref = json.loads(avfleet("publish-model", "--model-uri", f"{RUNS}/cluster/ensemble/model",
                             "--repo", MODEL_REPO, "--name", "dpe-scorer",
                             "--instance-kind", "KIND_CPU", "--json"))  # fmt: skip
    model_ref = ref["model-ref"]
    request.getfixturevalue("triton")
    common = {"recordings": FLEET, "date": DATE, "budget": "12", "model-repo": MODEL_REPO,
              "model": "dpe-scorer"}  # fmt: skip
    on_cluster = {**common, "index": "s3://avfleet-data/e2e/nightly/index-cluster",
                  "mining-root": "s3://avfleet-data/e2e/nightly/mining-cluster",
                  "queues": "s3://avfleet-data/e2e/nightly/queues-cluster",
                  "spark-launch": "client", "executor-cores": "1", "executor-memory": "1g",
                  "executor-cpu": "250m",
                  "pushgateway": "pushgateway.avfleet-local.svc.cluster.local:9091"}  # fmt: skip
    run = submit(cluster, "cronwf/nightly-mining", on_cluster)
    print(f"nightly-mining on the cluster: {run['took_s']:.0f} s")
    steps = {n["templateName"] for n in run["status"]["nodes"].values() if n["type"] == "Pod"}
    assert {"plan-mining", "spark-client", "mine", "publish-queue"} <= steps, steps

    local = {**common, "index": "s3://avfleet-data/e2e/nightly/index-local",
             "mining-root": "s3://avfleet-data/e2e/nightly/mining-local",
             "queues": "s3://avfleet-data/e2e/nightly/queues-local", "triton-url": "",
             "s3-endpoint-url": services.s3_url, "pushgateway": services.pushgateway}  # fmt: skip
    started = time.monotonic()
    done = local_run("workflows/nightly-mining.yaml", local, tmp_path / "wd")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"nightly-mining under local-run: {time.monotonic() - started:.0f} s")

    from avfleet.core.storage import read_parquet

    def mined(params: dict) -> tuple:
        folder = f"{params['mining-root']}/{DATE}/{plan_folder(run)}"
        return (read_parquet(f"{folder}/selection.parquet"),
                read_json(f"{params['queues']}/latest.json"),
                storage.read_bytes(f"{folder}/metrics.prom").decode())  # fmt: skip

    (sel, queue, metrics), (local_sel, local_queue, _) = mined(on_cluster), mined(local)
    assert len(sel) == 12 and sel["model"].eq(model_ref).all()
    assert "avfleet_mine_triton_latency_seconds" in metrics  # scored through Triton
    key = "frame_id"
    a = sel.sort_values(key, ignore_index=True)
    b = local_sel.sort_values(key, ignore_index=True)
    assert a[key].tolist() == b[key].tolist(), "Triton's selection differs from in-process"
    for column in [c for c in a.columns if a[c].dtype.kind == "f"]:
        assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), abs=1e-5), column
    assert queue["date"] == local_queue["date"] == DATE
    assert queue["tasks"] == local_queue["tasks"] == 12
    served = cluster.kubectl("-n", NS, "exec", "deployment/triton", "--", "python3", "-c",
                             "import urllib.request as u; print(u.urlopen("
                             "'http://127.0.0.1:8002/metrics').read().decode())")  # fmt: skip
    successes = [line for line in served.splitlines()
                 if line.startswith("nv_inference_request_success{") and "dpe-scorer" in line]  # fmt: skip
    assert successes and float(successes[0].rsplit(" ", 1)[1]) > 0, served[-2000:]


def plan_folder(run: dict) -> str:
    """The mining run's folder name under <root>/<date>/, as the cluster's plan named it."""
    return outputs(run)["plan-mining.out"].rstrip("/").rsplit("/", 1)[1]
