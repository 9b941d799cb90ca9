"""Settings: environment variables with the SCALER_ prefix, overridden by
command-line flags, passed in explicitly.

One model per concern, so a setting means the same in every command that
has it: `ClusterSettings` (pause, resume, status and all others),
`PrometheusSettings`, `PlanSettings` (plan: both, plus the policies and their
scope) and `Settings` (run: the plan's and the daemon's own)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scaler.cluster.actions import DEFAULT_EVENT_TTL_SECONDS
from scaler.cluster.autoscalers import CA_STATUS
from scaler.cluster.savings import GpuHourPrices
from scaler.cluster.workloads import DEFAULT_GPU_RESOURCES
from scaler.decide.decisions import DEFAULT_EXCLUDED_NAMESPACES
from scaler.decide.reverts import (
    DEFAULT_BACKOFF_MAX_SECONDS,
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_GITOPS_MANAGERS,
    DEFAULT_HANDS_OFF_SECONDS,
    HandsOff,
)

if TYPE_CHECKING:
    from scaler.cluster.kube import Kube
    from scaler.signals.prometheus import Prometheus


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


#: "a,b" in the environment or a flag; a list in code.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
PathList = Annotated[list[Path], NoDecode, BeforeValidator(_split_commas)]


class _Concern(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCALER_", extra="forbid", validate_default=True)


class ClusterSettings(_Concern):
    """Reaching the cluster and what scaler may touch there: every command."""

    kubeconfig: str | None = Field(None, description="default: in-cluster, else KUBECONFIG")
    context: str | None = Field(None, description="kubeconfig context (default: its current one)")
    excluded_namespaces: CommaList = Field(default_factory=lambda: list(DEFAULT_EXCLUDED_NAMESPACES),
                                           description="never touched (the daemon's own namespace is added)")
    own_namespace: str | None = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE"),
                                      description="the daemon's namespace (POD_NAMESPACE)")
    gpu_resources: CommaList = Field(default_factory=lambda: list(DEFAULT_GPU_RESOURCES),
                                     description="extended resources counted as GPUs")
    concurrency: int = Field(32, ge=1, le=256, description="writes in flight at once")
    api_qps: float = Field(500, ge=0, description="API requests per second, sustained (0: no client-side limit)")
    api_burst: int = Field(1000, ge=1, description="API requests allowed at once above api_qps")

    @property
    def all_excluded_namespaces(self) -> set[str]:
        return set(self.excluded_namespaces) | ({self.own_namespace} if self.own_namespace else set())

    def kube(self) -> Kube:
        from scaler.cluster.kube import (
            Kube,  # the client library is slow to import; validate needs none
        )

        return Kube.from_environment(kubeconfig=self.kubeconfig, context=self.context,
                                     pool_size=self.concurrency + 8, qps=self.api_qps, burst=self.api_burst)


class PrometheusSettings(_Concern):
    """Where the signals come from: plan and run."""

    prometheus_url: str = Field("http://127.0.0.1:9090", description="Prometheus base URL")
    prometheus_bearer_token_file: Path | None = Field(None, description="file with a bearer token, re-read per query")
    prometheus_username: str | None = Field(None, description="basic auth user")
    prometheus_password_file: Path | None = Field(None, description="file with the basic auth password")
    prometheus_ca_file: Path | None = Field(None, description="CA bundle for a TLS Prometheus")
    prometheus_timeout_seconds: float = Field(10, gt=0, description="per query")
    signal_deadline_seconds: float | None = Field(
        None, gt=0, description="how long one evaluation waits for all its queries; a later answer is unknown "
                                "for that evaluation (default: the query timeout)")

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def prometheus(self) -> Prometheus:
        from scaler.signals.prometheus import Prometheus

        return Prometheus(self.prometheus_url, timeout_seconds=self.prometheus_timeout_seconds,
                          bearer_token_file=self.prometheus_bearer_token_file, username=self.prometheus_username,
                          password_file=self.prometheus_password_file, ca_file=self.prometheus_ca_file)


class PlanSettings(PrometheusSettings, ClusterSettings):
    """The policies, their scope and who counts as a GitOps controller: what
    plan evaluates with, and the daemon too."""

    policies: PathList = Field(
        default_factory=lambda: [Path("/etc/scaler/policies")],
        description="policy files or directories (comma-separated in the environment)")
    policy_configmap: str | None = Field(
        None, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="read the policies from this ConfigMap (NAME in the own namespace, or NAMESPACE/NAME) through "
                    "the API instead of --policies: every replica has an edit within one reload interval, where a "
                    "mounted copy lags by up to a minute or more")
    namespaces: CommaList = Field(default_factory=list, description="watch only these namespaces (default: all)")
    gitops_managers: CommaList = Field(
        default_factory=lambda: list(DEFAULT_GITOPS_MANAGERS),
        description="managedFields managers that are GitOps controllers: their revert of a pause makes scaler "
                    "back off instead of pausing again")


class Settings(PlanSettings):
    """Everything `scaler run` reads: the plan's settings and the daemon's own."""

    evaluation_interval_seconds: float = Field(30, gt=0, description="full reconcile period")
    wake_check_interval_seconds: float = Field(5, gt=0, description="queue check period for paused workloads")
    policy_reload_interval_seconds: float = Field(5, gt=0, description="how often policy files are checked for changes")
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
    gitops_backoff_seconds: float = Field(DEFAULT_BACKOFF_SECONDS, gt=0,
                                          description="back-off after a GitOps revert; doubles per revert in a row")
    gitops_backoff_max_seconds: float = Field(DEFAULT_BACKOFF_MAX_SECONDS, gt=0, description="the back-off's cap")
    hands_off_seconds: float = Field(DEFAULT_HANDS_OFF_SECONDS, gt=0,
                                     description="after a person resized a paused workload whose policy has no "
                                                 "schedule (no window edge to wait for): hands off this long")
    event_ttl_seconds: float = Field(DEFAULT_EVENT_TTL_SECONDS, gt=0,
                                     description="the API server's --event-ttl: a new leader posts the Events its "
                                                 "predecessor owed for actions younger than this")
    node_follow_interval_seconds: float = Field(
        15, ge=0, description="how often the nodes of paused workloads are checked: released, reused, or held and by "
                              "what (0: not followed; docs/nodes.md)")
    node_held_warning_seconds: float = Field(
        1800, gt=0, description="one Warning Event on a paused workload whose node is still held this long after "
                                "the pause, naming what holds it")
    cluster_autoscaler_status: str = Field(
        CA_STATUS, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="NAMESPACE/NAME of cluster-autoscaler's status ConfigMap, read for its node groups")
    gpu_hour_price: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="price of a GPU-hour, for savings in money where a node has no price label, Karpenter or "
                    "OpenCost price (docs/savings.md)")
    gpu_hour_prices: str | None = Field(
        None, description='prices of a GPU-hour by node label value, as JSON: {"node.kubernetes.io/instance-type": '
                          '{"p4d.24xlarge": 4.1}}; labels: instance-type, zone, capacity-type, nodepool')
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The push wake (run/waking.py, docs/wake.md): off unless asked for.
    push_wake: bool = Field(False, description="serve POST /wake on the port: a request holder (gateway, proxy, "
                                               "script) wakes a workload at once, without Prometheus")
    push_wake_auth: Literal["token", "secret"] = Field(
        "token", description="token: a Kubernetes bearer token (TokenReview), with the verb on the workload's "
                             "/scale (SubjectAccessReview); secret: the shared secret in push_wake_secret_file")
    push_wake_secret_file: Path | None = Field(None, description="file holding the shared secret (secret mode; "
                                                                 "re-read when it changes)")
    push_wake_audiences: CommaList = Field(default_factory=lambda: ["scaler"],
                                           description="a token must be minted for one of these audiences "
                                                       "(empty: the API server's own)")
    push_wake_verb: str = Field("patch", pattern=r"^[a-z][a-z-]*$",
                                description="the verb a caller needs on the workload's /scale subresource")
    push_wake_auth_cache_seconds: float = Field(10, ge=0, le=300, description="how long a positive TokenReview "
                                                                              "or SubjectAccessReview is reused")
    push_wake_rate_per_second: float = Field(20, gt=0, description="per caller: permission checks not in memory "
                                                                   "and writes")
    push_wake_burst: int = Field(200, ge=1, description="per caller: how many above the rate at once")

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

    @field_validator("gpu_hour_prices")
    @classmethod
    def _prices(cls, value: str | None) -> str | None:
        GpuHourPrices.parse(None, value)  # a PriceError is a ValueError: named by flag and variable
        return value

    def prices(self) -> GpuHourPrices:
        return GpuHourPrices.parse(self.gpu_hour_price, self.gpu_hour_prices)

    @model_validator(mode="after")
    def _push_wake_secret(self) -> Settings:
        if self.push_wake and self.push_wake_auth == "secret" and self.push_wake_secret_file is None:
            raise ValueError("push_wake_auth=secret needs push_wake_secret_file")
        return self

    def hands_off(self) -> HandsOff:
        """Who is a GitOps controller, and how long scaler keeps its hands off after a revert or a person's edit."""
        return HandsOff(tuple(self.gitops_managers), self.gitops_backoff_seconds, self.gitops_backoff_max_seconds,
                        self.hands_off_seconds)

    @property
    def effective_lease_namespace(self) -> str:
        return self.lease_namespace or self.own_namespace or "default"


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class SettingsError(Exception):
    """Invalid settings, phrased for the person starting the daemon."""


def add_settings_arguments(parser: argparse.ArgumentParser, model: type[BaseSettings] = Settings) -> None:
    """One flag per setting of `model` (--evaluation-interval-seconds ...); a
    flag left out falls back to the SCALER_ variable, then the default."""
    for name, info in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = (info.description or "") + f" [env SCALER_{name.upper()}]"
        if info.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)


def settings_from(args: argparse.Namespace, model: type[SettingsT] = Settings,  # type: ignore[assignment]
                  *, named_files_first: bool = False) -> SettingsT:
    """`model` from the flags in `args`, then SCALER_ variables, then
    defaults; SettingsError names every invalid one by flag and variable.
    `named_files_first` (plan, backtest): policy files named by flag are
    read rather than a ConfigMap named only in the environment (the chart's
    pod sets SCALER_POLICY_CONFIGMAP: `scaler plan --policies draft.yaml`
    there plans the draft). The daemon reads the ConfigMap whenever one is set."""
    overrides = {name: getattr(args, name) for name in model.model_fields
                 if getattr(args, name, None) is not None}
    if named_files_first and "policies" in overrides and "policy_configmap" not in overrides:
        overrides["policy_configmap"] = None
    try:
        return model(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(p) for p in item["loc"]) or "settings"
            where = (f"--{field.replace('_', '-')} / SCALER_{field.upper()}" if field in model.model_fields
                     else field)
            problems.append(f"invalid setting {where}: {item['msg']} (got {item.get('input')!r})")
        raise SettingsError("\n".join(problems)) from None
