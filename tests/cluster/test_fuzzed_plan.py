"""`scaler plan` against the real cluster and Prometheus for a sample of the
fuzzer's accepted files (tests/fuzzing.py): each exits 0 or 2 with pure JSON
on stdout and no traceback. The unit-level fuzzer evaluates all of them."""

from __future__ import annotations

import json
import os

from kubernetes import client

from scaler.decide.loading import check_policies
from tests.fuzzing import policy_file
from tests.helpers import gpu_deployment, run_scaler

SAMPLE = int(os.environ.get("SCALER_FUZZ_PLAN_SAMPLE", "12"))


def accepted_files(directory, count: int) -> list:
    found = []
    seed = 0
    while len(found) < count:
        path = directory / f"fuzz-{seed}.yaml"
        path.write_text(policy_file(seed), encoding="utf-8", errors="surrogatepass")
        policies, problems = check_policies([path])
        if not problems and len(policies):
            found.append((seed, path))
        seed += 1
    return found


def test_plan_on_accepted_fuzzed_files(kube, namespace, cluster, tmp_path):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1,
                                                                labels={"app": "chat", "tier": "gpu"}))
    apps.create_namespaced_deployment(namespace, gpu_deployment("idle", replicas=0, gpus=1))
    for seed, path in accepted_files(tmp_path, SAMPLE):
        planned = run_scaler("plan", "--policies", str(path), "--prometheus-url", cluster.prometheus_url,
                             "--namespaces", namespace, "-o", "json", "--all", kubeconfig=cluster.kubeconfig)
        assert "Traceback" not in planned.stderr, f"seed {seed}:\n{path.read_text()}\n{planned.stderr}"
        # 0 nothing, 3 pending, 4 a query Prometheus refused (unknown); never 1 (error) or 2 (usage)
        assert planned.returncode in (0, 3, 4), f"seed {seed}:\n{path.read_text()}\n{planned.stdout}{planned.stderr}"
        answer = json.loads(planned.stdout)
        assert answer["policyErrors"] == [], f"seed {seed}: {answer['policyErrors']}"
