"""The annotations scaler reads and writes, under one documented prefix.

Pure constants (the decide layer imports them too)."""

PREFIX = "scaler.io/"

#: Replica count to restore on resume. Never 0.
LAST_REPLICAS = PREFIX + "last-replicas"
#: When the pause happened (RFC 3339, UTC).
PAUSED_AT = PREFIX + "paused-at"
#: Who paused it: "policy/<name>" or "manual".
PAUSED_BY = PREFIX + "paused-by"
#: Why, in words.
PAUSE_REASON = PREFIX + "pause-reason"
#: The rule that paused it (a reason code, e.g. keep-down-window): a window's
#: pause is undone when the window ends.
PAUSE_CAUSE = PREFIX + "pause-cause"
#: "true": paused by a person; the daemon never wakes it until a manual resume.
MANUAL_PAUSE = PREFIX + "paused"
#: Someone resized it while scaler had it paused: scaler leaves it alone until
#: this time (RFC 3339, the policy's next window edge).
OVERRIDE_UNTIL = PREFIX + "override-until"
#: "true" on a workload: scaler never touches it.
EXCLUDE = PREFIX + "exclude"
#: When the workload's current start began (RFC 3339): written with a resume or
#: scale-up, or when scaler first sees it loading after someone else scaled it.
STARTED_AT = PREFIX + "started-at"
#: When every desired replica was first seen Ready after STARTED_AT.
READY_AT = PREFIX + "ready-at"
#: The last few measured warm-ups (start to all Ready), seconds, oldest first.
WARM_UPS = PREFIX + "warm-up-seconds"
#: The start bookkeeping above: kept across pauses and resumes (not pause state).
START_TIMES = (STARTED_AT, READY_AT, WARM_UPS)

#: Everything above but EXCLUDE, which belongs to the user: a resume removes these.
PAUSE_STATE = (LAST_REPLICAS, PAUSED_AT, PAUSED_BY, PAUSE_REASON, PAUSE_CAUSE, MANUAL_PAUSE)

KSERVE_STOP = "serving.kserve.io/stop"
KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
