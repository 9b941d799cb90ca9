"""The local cluster's certificates and its admin kubeconfig, made with
openssl in `<state dir>/pki`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import node as real_node
from components import Cluster


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate
    (group system:masters) and the service-account signing key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-days", "30", "-subj",
             "/CN=scaler-local-ca", "-out", "ca.crt", cwd=pki)
    (pki / "server.ext").write_text(
        # In-cluster clients dial the kubernetes Service (the first address of
        # the service CIDR) by IP and by name.
        f"subjectAltName=IP:127.0.0.1,IP:{real_node.SERVICE_IP},DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=scaler-admin", "client.ext"),
    ):
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", f"{name}.crt", cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(cluster: Cluster) -> None:
    pki = cluster.state_dir / "pki"
    cluster.kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "scaler-local", "cluster": {
                    "server": cluster.apiserver_url,
                    "certificate-authority": str(pki / "ca.crt")}}],
                "users": [{"name": "scaler-admin", "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key")}}],
                "contexts": [{"name": "scaler-local", "context": {
                    "cluster": "scaler-local", "user": "scaler-admin"}}],
                "current-context": "scaler-local",
            },
            indent=2,
        )
    )

