"""The policy format: one pydantic model per part of a policy.

The format is described in docs/policies.md; `scaler schema` prints it as
JSON Schema. Every model forbids unknown keys, so a typo is an error, never a
silently ignored setting. Reading files, and reporting problems with
file:line, is `loading`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from scaler.decide.calendar_specs import CalendarSpec
from scaler.decide.calendars import Calendar
from scaler.decide.fields import (
    MAX_REPLICAS,
    MIN_TARGET_PER_REPLICA,
    POLICY_NAME,
    Duration,
    Finite,
    Kind,
    LabelName,
    Namespaces,
    PositiveDuration,
    Prewarm,
    Query,
    Whole,
    WholeOrNone,
    check_selector,
    invalid,
    parse_duration,  # noqa: F401 - part of this module's interface (tests, docs)
)
from scaler.decide.kinds import BUILTIN_KINDS, DEFAULT_KINDS, parse_kind
from scaler.decide.selectors import Selector
from scaler.decide.windows import (
    Mode,
    Outside,
    Schedule,
    Window,
    WindowError,
    cron_trigger,
    zone,
)


class OnUnknown(str, Enum):
    """What a policy does while a signal it uses is unknown."""

    HOLD = "hold"
    RESUME = "resume"


class Absent(str, Enum):
    """What a wake signal without a series for a workload at zero means."""

    UNKNOWN = "unknown"
    ZERO = "zero"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- targets


class Targets(_Model):
    """Which workloads a policy manages. All given conditions must hold."""

    namespaces: Namespaces | None = Field(
        None, description="Only these namespaces. Give this or namespace_selector, or neither for all.")
    namespace_selector: Annotated[str | None, AfterValidator(check_selector)] = Field(
        None, description="Only namespaces whose labels match this kubectl label selector.")
    selector: Annotated[str, AfterValidator(check_selector)] = Field(
        "", description="kubectl label selector on the workload's labels, e.g. 'app in (chat,embed),!canary'.")
    kinds: tuple[Kind, ...] = Field(
        DEFAULT_KINDS, description=f"{', '.join(BUILTIN_KINDS)} (or kubectl's names for them), "
                                   "or <plural>.<group>/<version> for a custom resource with a /scale subresource.")
    exclude_namespaces: Namespaces = Field((), description="Never these namespaces.")

    @field_validator("namespace_selector")
    @classmethod
    def _one_namespace_filter(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("namespaces") is not None:
            raise invalid("give either namespaces or namespace_selector, not both")
        return value

    @field_validator("kinds")
    @classmethod
    def _some_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise invalid("kinds is empty; leave it out for Deployment and StatefulSet")
        return value

    def model_post_init(self, context: Any) -> None:
        self.compiled  # noqa: B018 - build it at load, not on the first tick

    @cached_property
    def compiled(self) -> TargetMatcher:
        """The targets in the form select_policy matches fast (pydantic's
        private attributes are slow to read; this is a plain object)."""
        return TargetMatcher(
            kinds=frozenset(parse_kind(kind).key for kind in self.kinds),
            excluded=frozenset(self.exclude_namespaces),
            namespaces=frozenset(self.namespaces) if self.namespaces is not None else None,
            namespace_selector=Selector.parse(self.namespace_selector)
            if self.namespace_selector is not None else None,
            selector=Selector.parse(self.selector),
        )

    def matches(self, *, kind: str, namespace: str, labels: Mapping[str, str],
                namespace_labels: Mapping[str, str]) -> bool:
        return self.compiled.matches(kind, namespace, labels, namespace_labels)


@dataclass(frozen=True, slots=True)
class TargetMatcher:
    kinds: frozenset[str]
    excluded: frozenset[str]
    namespaces: frozenset[str] | None
    namespace_selector: Selector | None
    selector: Selector

    def matches(self, kind: str, namespace: str, labels: Mapping[str, str],
                namespace_labels: Mapping[str, str]) -> bool:
        return self.covers(kind, namespace, namespace_labels) and self.selector.matches(labels)

    def covers(self, kind: str, namespace: str, namespace_labels: Mapping[str, str]) -> bool:
        """Whether the policy reaches this kind in this namespace, whatever the workload's labels."""
        if kind not in self.kinds or namespace in self.excluded:
            return False
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return self.namespace_selector is None or self.namespace_selector.matches(namespace_labels)


# ---------------------------------------------------------------- schedule


def _check_cron(expression: str | None) -> str | None:
    if expression is not None:
        try:
            cron_trigger(expression)
        except WindowError as error:
            raise invalid(str(error)) from None
    return expression


Cron = Annotated[str | None, AfterValidator(_check_cron)]


def _check_calendar(name: str, info: ValidationInfo) -> str:
    """A calendar of the policy set (`loading` passes them in the validation
    context: {"calendars": {name: Calendar}, "broken": {name}})."""
    context = info.context or {}
    known, broken = context.get("calendars", {}), context.get("broken", set())
    if name in broken:  # its own problem is reported where it is defined
        raise PydanticCustomError(BROKEN_CALENDAR, "calendar {name} is not usable", {"name": name})
    if name not in known:
        listed = ", ".join(sorted(known)) or "none are defined (add a top-level calendars: mapping)"
        raise invalid(f"unknown calendar {name!r} (calendars: {listed})")
    return name


CalendarName = Annotated[str, AfterValidator(_check_calendar)]


#: The error type of a reference to a calendar that has a problem of its own.
BROKEN_CALENDAR = "broken_calendar"


class WindowConfig(_Model):
    """A time window: `start` and `end` as standard 5-field cron (0 and 7 =
    Sunday), or the compact `when`; with `on`, only on the days of those
    calendars; with `except`, never on theirs."""

    name: str | None = Field(None, description="Shown in reasons; defaults to the `when` text.")
    mode: Mode = Field(description="up: keep workloads up (no idle scaling; resume what scaler paused). "
                                   "down: keep them at zero.")
    start: Cron = Field(None, description="Cron expression at which the window opens (inclusive).")
    end: Cron = Field(None, description="Cron expression at which the window closes (exclusive).")
    when: str | None = Field(None, description="Compact form: 'Mon-Fri 08:00-20:00', 'daily 22:00-06:00' "
                                               "(ends the next day), 'Sat,Sun 00:00-24:00', "
                                               "'Fri 18:00-Mon 07:00'.")
    on: tuple[CalendarName, ...] = Field((), description="Active only on the days (and events) of these "
                                                         "calendars, by name; alone, all of each such day.")
    except_: tuple[CalendarName, ...] = Field((), alias="except",
                                              description="Never active on the days (and events) of these calendars.")

    @field_validator("when")
    @classmethod
    def _compact(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("start") is not None or info.data.get("end") is not None:
            raise invalid("give either start and end, or when, not both")
        try:
            Window.from_when(value, name="check", mode=Mode.UP, tz=zone("UTC"))
        except WindowError as error:
            raise invalid(str(error)) from None
        return value

    @model_validator(mode="after")
    def _complete(self) -> WindowConfig:
        if self.when is None and not (self.start is None and self.end is None and (self.on or self.except_)):
            if self.start is None or self.end is None:
                missing = "start" if self.start is None else "end"
                raise invalid(f"missing {missing}: a window needs start and end (cron), when "
                               "(e.g. 'Mon-Fri 08:00-20:00'), or calendars (on: [...])")
            try:
                Window(name="check", mode=self.mode, start=self.start, end=self.end, tz=zone("UTC"))
            except WindowError as error:
                raise invalid(str(error)) from None
        return self

    def compile(self, *, index: int, tz: Any, calendars: Mapping[str, Calendar]) -> Window:
        name = self.name or self.when or f"windows[{index}]"
        return Window(name=name, mode=self.mode, start=self.start, end=self.end, tz=tz, when=self.when,
                      on=tuple(calendars[name] for name in self.on),
                      unless=tuple(calendars[name] for name in self.except_))


def _check_zone(name: str) -> str:
    try:
        zone(name)
    except WindowError as error:
        raise invalid(str(error)) from None
    return name


class ScheduleConfig(_Model):
    """Windows in one time zone, and what applies outside them."""

    timezone: Annotated[str, AfterValidator(_check_zone)] = Field(
        description="IANA time zone the windows are written in, e.g. Europe/Berlin.")
    windows: tuple[WindowConfig, ...] = Field(description="At least one window.")
    outside: Outside = Field(Outside.SIGNALS, description="signals: outside every window the idle and wake "
                                                          "rules decide. down: keep workloads down outside "
                                                          "every window (wake by queue still applies).")

    @field_validator("windows")
    @classmethod
    def _some_windows(cls, value: tuple[WindowConfig, ...]) -> tuple[WindowConfig, ...]:
        if not value:
            raise invalid("windows is empty; give at least one window or leave schedule out")
        return value

    def model_post_init(self, context: Any) -> None:
        # Built at load, not on the first tick, with the set's calendars (see _check_calendars).
        self.__dict__["compiled"] = self._compile((context or {}).get("calendars", {}))

    @cached_property
    def compiled(self) -> Schedule:
        """The schedule windows.py evaluates."""
        return self._compile({})

    def _compile(self, calendars: Mapping[str, Calendar]) -> Schedule:
        tz = zone(self.timezone)
        windows = tuple(window.compile(index=index, tz=tz, calendars=calendars)
                        for index, window in enumerate(self.windows))
        return Schedule(windows=windows, tz=tz, outside=self.outside)


# ---------------------------------------------------------------- signals


class _Signal(_Model):
    query: Query = Field(description="PromQL instant query, one series per workload.")
    workload_label: LabelName = Field("workload", description="Label of each result series naming the workload.")
    namespace_label: LabelName = Field("namespace",
                                       description="Label of each result series naming its namespace.")


class IdleSignal(_Signal):
    """Idle when the signal stayed below `threshold` for the whole `duration`.
    The daemon queries max_over_time over the duration, so one value per
    workload reaches the decision: the signal's maximum over that time."""

    threshold: Finite = Field(description="Idle while the signal is below this.")
    duration_seconds: PositiveDuration = Field(alias="duration",
                                               description="How long the signal must stay below the threshold.")


def _query_or_preset(schema: dict[str, Any]) -> None:
    """For editors: a wake signal needs its query and target_per_replica, or a preset that gives them."""
    required = schema.pop("required", [])
    schema["anyOf"] = [{"required": required}, {"required": ["preset"]}]


class WakeSignal(_Signal):
    """A queue that still exists while the workload is at zero (a router's or
    gateway's metric; a pod's own metrics vanish with the pod)."""

    target_per_replica: Finite = Field(ge=MIN_TARGET_PER_REPLICA,
                                       description="Queue length one replica is meant to serve (at least 0.001).")
    activation_threshold: Finite = Field(0.0, ge=0, description="Wake from zero when the queue is above this.")
    absent: Absent = Field(
        Absent.UNKNOWN, description="What no series for a workload at zero means: unknown (the safe default; "
                                    "reported as cannot wake once it lasts blocked_after) or zero (the holder "
                                    "exports nothing while nobody waits). Never read as zero for a running "
                                    "workload: absence never scales anything down.")
    blocked_after_seconds: PositiveDuration = Field(
        600.0, alias="blocked_after",
        description="A workload at zero whose wake signal has had no usable series (or whose query has failed) "
                    "this long is reported as cannot wake: in plan, the metric scaler_wake_blocked and its alert.")
    preset: str | None = Field(
        None, description="A request holder's ready-made wake signal (keda-http-add-on, llm-d-epp, "
                          "knative-activator, vllm-router): its query, labels, absent and target_per_replica, "
                          "each overridden by a key given beside it.")

    model_config = ConfigDict(json_schema_extra=_query_or_preset)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        from scaler.decide.presets import preset_values  # it reads Absent from here

        return {**preset_values(data["preset"]), **data}


# ---------------------------------------------------------------- policy


class Policy(_Model):
    """One policy. Of all policies matching a workload the one with the
    highest priority applies; two matching with the same top priority are a
    conflict and the workload is left alone."""

    name: str = Field(description="Unique across all policy files; lowercase letters, digits, '-' and '.'.")
    priority: Whole = Field(0, ge=-MAX_REPLICAS - 1, le=MAX_REPLICAS,
                          description="Higher wins when several policies match one workload.")
    description: str = ""
    targets: Targets = Field(default_factory=Targets)
    schedule: ScheduleConfig | None = None
    idle: IdleSignal | None = None
    wake: WakeSignal | None = None
    min_replicas: Whole = Field(
        1, ge=1, le=MAX_REPLICAS,
        description="Smallest non-zero size: floor for a wake, and the size a resume uses when nothing was recorded.")
    max_replicas: WholeOrNone = Field(
        None, ge=1, le=MAX_REPLICAS,
        description="Cap for queue-driven scale-up. Without it the queue only wakes (to the recorded size or "
                    "min_replicas).")
    scale_down_delay_seconds: Duration = Field(
        300.0, alias="scale_down_delay",
        description="No idle (or outside: down) scale-down within this long after the workload was last "
                    "scaled up or resumed (recorded on the object: restarts keep it).")
    startup_grace_seconds: Duration = Field(
        60.0, alias="startup_grace",
        description="A workload is starting until all its replicas are Ready and then for this long: no idle "
                    "or outside: down scale-down meanwhile.")
    max_startup_seconds: PositiveDuration = Field(
        1800.0, alias="max_startup",
        description="A workload still not Ready this long after its start is treated as started (a crash "
                    "loop must not hold its GPUs forever).")
    prewarm: Prewarm | None = Field(
        None, description="Resume ahead of a keep-up window's start so it is Ready when the window opens: "
                          "'auto' (the workload's measured warm-up) or a duration.")
    prewarm_max_seconds: PositiveDuration = Field(
        900.0, alias="prewarm_max", description="The longest lead 'auto' pre-warm takes.")
    on_unknown: OnUnknown = Field(
        OnUnknown.HOLD, description="While a signal this policy uses is unknown: hold changes nothing; "
                                    "resume wakes workloads scaler paused. Neither ever scales down.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not POLICY_NAME.match(value):
            raise invalid(f"{value!r} is not a policy name: use 1-63 lowercase letters, digits, '-' and '.', "
                           "starting and ending with a letter or digit")
        return value

    @field_validator("max_replicas")
    @classmethod
    def _max_not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        minimum = info.data.get("min_replicas")
        if value is not None and minimum is not None and value < minimum:
            raise invalid(f"max_replicas ({value}) is below min_replicas ({minimum})")
        return value

    @model_validator(mode="after")
    def _has_a_rule(self) -> Policy:
        if self.schedule is None and self.idle is None and self.wake is None:
            raise invalid("the policy has no rule: give at least one of schedule, idle or wake")
        return self


class PolicyFile(_Model):
    """The recommended shape of a policy file: a list under `policies:`, and
    calendars (each defined once in the whole set of files)."""

    calendars: dict[str, CalendarSpec] = Field(
        default_factory=dict, description="Named calendars, for windows' on: and except:.")
    policies: tuple[Policy, ...] = ()


def json_schema() -> dict[str, Any]:
    """JSON Schema of a policy file (a `policies:` list or one policy), for
    editors such as yaml-language-server."""
    schema = TypeAdapter(PolicyFile | Policy).json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "scaler policy file", **schema}
