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
#: How many replicas were wanted at READY_AT: more wanted since is a scale-up
#: (a new start), not a relapse of that one.
READY_REPLICAS = PREFIX + "ready-replicas"
#: The last few measured warm-ups (start to all Ready), seconds, oldest first.
WARM_UPS = PREFIX + "warm-up-seconds"
#: Warm-ups kept on the object for `prewarm: auto` and `scaler status`.
WARM_UPS_KEPT = 5
#: Of the last warm-up, the seconds from its start until the last new node its
#: pods were placed on was Ready (a resume that waited for nodes): the rest
#: was the model's. Written with READY_AT; absent when no node was waited for.
NODE_WAIT = PREFIX + "node-wait-seconds"
#: The start bookkeeping above: kept across pauses and resumes (not pause state).
START_TIMES = (STARTED_AT, READY_AT, READY_REPLICAS, WARM_UPS, NODE_WAIT)

#: The nodes the pause's pods ran on and what became of each (JSON, written
#: with the pause and kept current by the daemon's node follower: docs/nodes.md).
NODES = PREFIX + "nodes"

#: Everything above but EXCLUDE, which belongs to the user: a resume removes these.
PAUSE_STATE = (LAST_REPLICAS, PAUSED_AT, PAUSED_BY, PAUSE_REASON, PAUSE_CAUSE, MANUAL_PAUSE, NODES)

#: The last action that called for an Event: its id (the Event is named
#: after it), reason, type, message and time, as JSON. The next daemon posts
#: an Event its predecessor owed from it (cluster/actions.py).
LAST_ACTION = PREFIX + "last-action"

#: What a resume leaves on the object: the start bookkeeping and the record
#: of the last action (the Resumed itself; its Event is named after it).
KEPT_AFTER_RESUME = (*START_TIMES, LAST_ACTION)

KSERVE_STOP = "serving.kserve.io/stop"
KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
#: On a ScaledObject scaler paused with its workload: the paused-replicas value it had before ("" for
#: none), put back on resume, so a person's own KEDA pause outlives scaler's.
KEDA_BEFORE = PREFIX + "keda-paused-replicas-before"

#: `scaler resume --for/--until`: a person woke it and wants it up until this
#: time (RFC 3339), or "next-window" (the policy's next window edge after
#: HOLD_FROM); no pause before then, after which the policy applies again.
HOLD_UNTIL = PREFIX + "hold-up-until"
#: When that hold began (RFC 3339): where "next-window" counts from.
HOLD_FROM = PREFIX + "hold-up-from"
#: The GitOps controller (a managedFields manager) that last set the replicas
#: back while scaler had the workload paused.
REVERTED_BY = PREFIX + "reverted-by"
#: How many pauses in a row a GitOps controller has reverted (the back-off grows with it).
REVERTS = PREFIX + "reverts"
#: scaler does not pause it again before this time (RFC 3339): the back-off.
BACKOFF_UNTIL = PREFIX + "backoff-until"

#: What a revert leaves on a running workload; a pause that holds (scaler
#: resumes it itself) or a manual resume clears it.
REVERT_STATE = (REVERTED_BY, REVERTS, BACKOFF_UNTIL)
