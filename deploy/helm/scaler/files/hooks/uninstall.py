"""helm uninstall, pre-delete: stop the daemon while its RBAC still exists,
then delete its Lease.

Helm deletes the Deployment, the Roles and the RoleBindings in one pass, so a
leader receiving SIGTERM after that can no longer hand its Lease back, and the
Lease stays behind with a stale holder. Run before that pass, this scales the
Deployment to zero, waits until its pods are gone (each leader releases the
Lease on SIGTERM, with its permissions intact) and deletes the Lease, which
helm does not own. Exits non-zero if the pods outlive the timeout, so the
uninstall stops rather than leave a Lease a live leader would renew.
"""

import json
import os
import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

namespace = os.environ["NAMESPACE"]
deployment = os.environ["DEPLOYMENT"]
lease = os.environ["LEASE"]
selector = os.environ["SELECTOR"]
timeout_seconds = float(os.environ["TIMEOUT_SECONDS"])


def say(message: str, **fields) -> None:
    print(json.dumps({"event": message, "namespace": namespace, **fields}), flush=True)


def ignoring_not_found(call, *args) -> None:
    try:
        call(*args)
    except ApiException as error:
        if error.status != 404:
            raise


config.load_incluster_config()
apps, core, leases = client.AppsV1Api(), client.CoreV1Api(), client.CoordinationV1Api()
started = time.monotonic()
ignoring_not_found(apps.patch_namespaced_deployment_scale, deployment, namespace, {"spec": {"replicas": 0}})
say("scaled to zero", deployment=deployment)
while pods := [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items]:
    if time.monotonic() - started > timeout_seconds:
        say("pods still running; not deleting the lease", pods=pods, timeout_seconds=timeout_seconds)
        sys.exit(1)
    time.sleep(0.5)
say("pods gone", seconds=round(time.monotonic() - started, 1))
ignoring_not_found(leases.delete_namespaced_lease, lease, namespace)
say("lease deleted", lease=lease)
