"""The daemon's settings: environment variables with the SCALER_ prefix,
overridden by command-line flags. One object, passed in explicitly."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCALER_", extra="forbid", validate_default=True)

    policies: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("/etc/scaler/policies")],
        description="policy files or directories (comma-separated in the environment)")
    prometheus_url: str = Field("http://127.0.0.1:9090", description="Prometheus base URL")
    prometheus_bearer_token_file: Path | None = Field(None, description="file with a bearer token, re-read per query")
    prometheus_username: str | None = Field(None, description="basic auth user")
    prometheus_password_file: Path | None = Field(None, description="file with the basic auth password")
    prometheus_ca_file: Path | None = Field(None, description="CA bundle for a TLS Prometheus")
    prometheus_timeout_seconds: float = Field(10, gt=0, description="per query")
    evaluation_interval_seconds: float = Field(30, gt=0, description="full reconcile period")
    wake_check_interval_seconds: float = Field(5, gt=0, description="queue check period for paused workloads")
    policy_reload_interval_seconds: float = Field(5, gt=0, description="how often policy files are checked for changes")
    namespaces: CommaList = Field(default_factory=list, description="watch only these namespaces (default: all)")
    excluded_namespaces: CommaList = Field(default_factory=lambda: ["kube-system"],
                                           description="never touched (the daemon's own namespace is added)")
    own_namespace: str | None = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE"),
                                      description="the daemon's namespace (POD_NAMESPACE)")
    dry_run: bool = Field(False, description="decide and report, never write")
    leader_election: bool = Field(False, description="only the Lease holder acts")
    lease_name: str = "scaler"
    lease_namespace: str | None = Field(None, description="default: own namespace, else 'default'")
    # Whole seconds: the client's Lease record stores them as integers.
    lease_duration_seconds: int = Field(15, gt=0, description="a standby takes over this long after the leader dies")
    lease_renew_deadline_seconds: int = Field(10, gt=0, description="the leader stops acting when it cannot renew "
                                                                    "for this long")
    lease_retry_period_seconds: int = Field(2, gt=0, description="how often candidates try the Lease")
    identity: str = Field(default_factory=lambda: os.environ.get("POD_NAME") or os.uname().nodename,
                          description="leader election identity")
    bind_address: str = Field("0.0.0.0", description="address of the metrics/health port")
    port: int = Field(8080, ge=0, le=65535, description="metrics, /healthz and /readyz (0: any free port)")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    kubeconfig: str | None = Field(None, description="default: in-cluster, else KUBECONFIG")
    gpu_resources: CommaList = Field(default_factory=lambda: ["nvidia.com/gpu"],
                                     description="extended resources counted as GPUs")
    concurrency: int = Field(16, ge=1, le=256, description="writes in flight at once")

    @field_validator("policies", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(p) for p in value.split(",") if p.strip()]
        return value

    @field_validator("namespaces", "excluded_namespaces", "gpu_resources", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _lease_timings(self) -> Settings:
        # The client's election refuses anything else, by exiting the process.
        if self.leader_election and not (
                1 <= self.lease_retry_period_seconds
                and 1.2 * self.lease_retry_period_seconds < self.lease_renew_deadline_seconds
                < self.lease_duration_seconds):
            raise ValueError("lease timings must satisfy 1 <= retry period, "
                             "1.2 x retry period < renew deadline < lease duration")
        return self

    @property
    def all_excluded_namespaces(self) -> set[str]:
        return set(self.excluded_namespaces) | ({self.own_namespace} if self.own_namespace else set())

    @property
    def effective_lease_namespace(self) -> str:
        return self.lease_namespace or self.own_namespace or "default"


class SettingsError(Exception):
    """Invalid settings, phrased for the person starting the daemon."""


def add_settings_arguments(parser: argparse.ArgumentParser, *, only: tuple[str, ...] | None = None) -> None:
    """One flag per setting (--evaluation-interval-seconds ...); a flag left
    out falls back to the SCALER_ variable, then the default."""
    for name, info in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = (info.description or "") + f" [env SCALER_{name.upper()}]"
        if info.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name) for name in Settings.model_fields
                 if getattr(args, name, None) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(p) for p in item["loc"]) or "settings"
            where = (f"--{field.replace('_', '-')} / SCALER_{field.upper()}" if field in Settings.model_fields
                     else field)
            problems.append(f"invalid setting {where}: {item['msg']} (got {item.get('input')!r})")
        raise SettingsError("\n".join(problems)) from None
