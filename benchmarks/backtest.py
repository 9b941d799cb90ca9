"""`scaler backtest` at the issue's size: 7 days at a 1-minute step, 1,000
workloads, 20 policies (target: under 30 s; Prometheus requests proportional
to policies, not to workloads or steps). Untimed set-up: 20 namespaces
bt-bench-<id>-NN with a policy each (idle and wake signals, some with a
keep-up business-hours or keep-down weekend window in their own zone) and
paused Deployments (replicas 1-4, nvidia.com/gpu: 1); a loopback server in
this process answers /api/v1/query_range as Prometheus would, from seeded
data (diurnal traffic per zone, quiet nights and weekends, some always busy or
idle, queue bursts, gaps, NaN; idle is the 30-minute rolling max), each run's
answers built before its clock starts. Timed, each in its own process:
backtest() at each size over 7 days, at the largest over 1 day, then `scaler
backtest -o json` once; --profile adds a cProfile run at the largest size.

    .venv/bin/python benchmarks/backtest.py --kubeconfig /tmp/c1/kubeconfig [--sizes 250,500,1000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import accumulate
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import common
import yaml

from scaler.cluster.kube import Kube
from scaler.decide.replaying import Steps
from scaler.run.backtesting import backtest
from scaler.run.settings import PlanSettings
from scaler.signals.history import chunks

POLICIES = 20
PER_NAMESPACE = 50
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "America/Los_Angeles", "Australia/Sydney")
IDLE_MINUTES = 30
#: A point's code: 0 no point (a gap), 1 NaN, n + 2 the value n; TOKENS[code] is how it is sent.
TOKENS = ["", '"NaN"]'] + [f'"{n}"]' for n in range(254)]
CODE = [min(n, 253) + 2 for n in range(1024)]
NAMESPACE = re.compile(r'namespace="([^"]+)"')
SCALER = Path(sys.executable).parent / "scaler"


def policy_file(namespace: str, index: int) -> str:
    """One namespace's policy: idle and wake signals, and on three in four keep-up or keep-down windows."""
    up = {"name": "business-hours", "mode": "up", "when": "Mon-Fri 08:00-18:00"}
    down = {"name": "weekend", "mode": "down", "when": "Sat,Sun 00:00-24:00"}
    policy = {"name": f"bt-bench-{index:02d}", "targets": {"namespaces": [namespace], "selector": "bench=backtest"},
              "idle": {"query": f'vllm:num_requests_running{{namespace="{namespace}"}}', "threshold": 1,
                       "duration": "30m"},
              "wake": {"query": f'gateway_pending_requests{{namespace="{namespace}"}}', "target_per_replica": 8}}
    if index % 4:
        windows = ([up], [down], [up, down])[index % 4 - 1]
        policy["schedule"] = {"timezone": ZONES[index % len(ZONES)], "windows": windows}
    if index % 2 == 0:
        policy["max_replicas"] = 4
    return yaml.safe_dump({"policies": [policy]}, sort_keys=False)


def shape_of(zone: str, base: int, minutes: int) -> list[float]:
    """Traffic (0..1) each minute in `zone`: a hump 07:00-21:00 on working days, a tenth of it at weekends."""
    tz, shape = ZoneInfo(zone), []
    for minute in range(minutes):
        local = datetime.fromtimestamp(base + 60 * minute, tz)
        hour = local.hour + local.minute / 60
        day = math.sin(math.pi * (hour - 7) / 14) ** 1.5 if 7 < hour < 21 else 0.0
        shape.append(day * (0.1 if local.weekday() >= 5 else 1.0))
    return shape


def rolling_max(values: list[int], width: int) -> list[int]:
    """max(values[i - width + 1 .. i]) for each i (van Herk/Gil-Werman: block prefix and suffix maxima)."""
    padded = [0] * (width - 1) + values
    ahead, behind = [], []
    for first in range(0, len(padded), width):
        block = padded[first:first + width]
        ahead.extend(accumulate(block, max))
        behind.extend(reversed(list(accumulate(reversed(block), max))))
    return list(map(max, behind[:len(values)], ahead[width - 1:]))


def punch(rng: random.Random, codes: bytearray, *, chance: float, longest: int, echo: int = 0) -> None:
    """Seeded gaps (no points) and a few NaN; an idle gap also empties the steps `echo` minutes
    on (the daemon's query wants a sample at its window's start too)."""
    size = len(codes)
    for _ in range(rng.randint(1, 3) if rng.random() < chance else 0):
        first, length = rng.randrange(size), rng.randint(3, longest)
        for start in {first, first + echo}:
            end = min(start + length, size)
            codes[start:end] = bytes(max(0, end - start))
    for _ in range(rng.randint(1, 3) if rng.random() < 0.2 else 0):
        codes[rng.randrange(size)] = 1


def workload_series(seed: str, shape: list[float]) -> tuple[bytearray, bytearray]:
    """(idle, queue) codes a minute for one workload, from its seed."""
    rng = random.Random(seed)
    noise, minutes = rng.random, len(shape)
    kind = rng.choices(("diurnal", "busy", "idle", "sporadic"), weights=(70, 8, 10, 12))[0]
    peak, floor = rng.uniform(1.5, 8), rng.uniform(0, 0.004) if kind != "busy" else rng.uniform(2, 5)
    if kind in ("diurnal", "busy"):
        running = [int(level * peak + floor + noise()) for level in shape]
    else:
        running = [0] * minutes
        for _ in range(rng.randint(2, 12) if kind == "sporadic" else rng.randint(0, 2)):
            first, length = rng.randrange(minutes), rng.randint(5, 90) if kind == "sporadic" else 1
            for minute in range(first, min(first + length, minutes)):
                running[minute] = int(rng.uniform(0.5, 4) + noise())
    queue = [n // 6 for n in running]  # overload spills into the router's queue
    for _ in range(rng.randint(1, 12)):  # and requests wait while it is quiet
        first, depth = rng.randrange(minutes), rng.randint(1, 5)
        for minute in range(first, min(first + rng.randint(1, 4), minutes)):
            queue[minute] = max(queue[minute], depth)
    idle = bytearray(map(CODE.__getitem__, rolling_max(running, IDLE_MINUTES + 1)))
    waiting = bytearray(map(CODE.__getitem__, queue))
    punch(rng, idle, chance=0.3, longest=90, echo=IDLE_MINUTES)
    punch(rng, waiting, chance=0.15, longest=20)
    return idle, waiting


class FakePrometheus(ThreadingHTTPServer):
    """/api/v1/query_range on 127.0.0.1, from each workload's signals a minute from `base` (unix
    seconds); `live`: workloads that exist per namespace; `prepare` builds a run's answers ahead."""

    daemon_threads = True

    def __init__(self, namespaces: list[str], *, base: int, minutes: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.base, self.cache, self.lock, self.live, self.codes = base, {}, threading.Lock(), {}, {}
        self.requests, self.serve_seconds, self.built_late = 0, 0.0, 0
        shapes = {zone: shape_of(zone, base, minutes) for zone in ZONES}
        for index, namespace in enumerate(namespaces):
            idle, queue = self.codes[(namespace, "idle")], self.codes[(namespace, "queue")] = {}, {}
            for number in range(PER_NAMESPACE):
                idle[f"w-{number:03d}"], queue[f"w-{number:03d}"] = workload_series(
                    f"{index}/{number}", shapes[ZONES[index % len(ZONES)]])

    def answer(self, namespace: str, signal_name: str, start: int, end: int, step: int) -> bytes:
        """As Prometheus words it: whole-second timestamps, values as strings, no point in a gap."""
        stride, first = step // 60, (start - self.base) // 60
        stamps = [f"[{start + k * step}," for k in range((end - start) // step + 1)]
        series, parts = self.codes.get((namespace, signal_name), {}), []
        for workload in list(series)[:self.live.get(namespace, 0)]:
            codes = series[workload][first:first + len(stamps) * stride:stride]
            # codes runs out where the generated minutes do: no points past them.
            values = ",".join([stamp + TOKENS[code] for stamp, code in zip(stamps, codes, strict=False) if code])
            parts.append(f'{{"metric":{{"namespace":"{namespace}","workload":"{workload}"}},"values":[{values}]}}')
        return ('{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(parts) + "]}}").encode()

    def prepare(self, namespaces: list[str], *, start: int, count: int) -> float:
        """Seconds to build the answers to a backtest of `count` minutes from `start`, chunked as scaler chunks."""
        began = time.perf_counter()
        keys = [(ns, name, start + 60 * first, start + 60 * last, 60)
                for first, last in chunks(count) for ns in namespaces for name in ("idle", "queue")]
        self.cache = {key: self.answer(*key) for key in keys}
        self.requests, self.serve_seconds, self.built_late = 0, 0.0, 0
        return time.perf_counter() - began


class Handler(BaseHTTPRequestHandler):
    # As Go's net/http: keep-alive, no 40 ms delayed-ACK stalls; an idle connection ends by itself.
    protocol_version, disable_nagle_algorithm, timeout = "HTTP/1.1", True, 60

    def do_GET(self) -> None:
        self._range(urlsplit(self.path).query)

    def do_POST(self) -> None:
        self._range(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())

    def _range(self, form_text: str) -> None:
        began, server, key = time.perf_counter(), self.server, self._asked(form_text)
        status, body = (200, server.cache.get(key)) if key else (400, b'{"status":"error","errorType":"bad_data"}')
        if body is None:
            body = server.answer(*key)
            server.built_late += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with server.lock:
            server.requests += 1
            server.serve_seconds += time.perf_counter() - began

    def _asked(self, form_text: str) -> tuple | None:
        """(namespace, signal, start, end, step) of a range query, or None."""
        form = {key: values[-1] for key, values in parse_qs(form_text).items()}
        try:
            start, end, step = (int(float(form[name])) for name in ("start", "end", "step"))
        except (KeyError, ValueError):
            return None
        if urlsplit(self.path).path != "/api/v1/query_range" or step <= 0 or step % 60 \
                or (end - start) / step > 11000:  # Prometheus's own limit
            return None
        promql = form.get("query", "")
        match = NAMESPACE.search(promql)
        return match[1] if match else "", "idle" if "max_over_time" in promql else "queue", start, end, step

    def log_message(self, *args) -> None:
        pass


def profiled(call, top: int):
    """call() under cProfile, in every thread it starts too; prints the top functions."""
    profiles = [cProfile.Profile()]

    def on_thread(*_) -> None:
        sys.setprofile(None)
        profiles.append(cProfile.Profile())
        profiles[-1].enable()

    threading.setprofile(on_thread)
    profiles[0].enable()
    try:
        return call()
    finally:
        profiles[0].disable()
        threading.setprofile(None)
        stats = pstats.Stats(profiles[0], stream=sys.stdout)
        for profile in profiles[1:]:
            stats.add(profile)
        print(f"cProfile over {len(profiles)} threads (the main thread's cumulative includes waiting for the others)")
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)


def child(args: argparse.Namespace) -> int:
    """One backtest() in this process, timed: one JSON line on stdout."""
    settings = PlanSettings(kubeconfig=args.kubeconfig, prometheus_url=args.prometheus_url,
                            policies=[Path(args.policies)])
    steps = Steps(datetime.fromtimestamp(args.start, UTC), 60, args.count)
    rss_before, marks = peak_rss_mib(), {}

    def run():
        return backtest(settings, steps=steps, now=datetime.now(UTC),
                        progress=lambda what, done: marks.__setitem__(what, time.perf_counter()),
                        on_plan=lambda signals, workloads: marks.setdefault("plan", time.perf_counter()))

    began, cpu = time.perf_counter(), time.process_time()
    result = profiled(run, 25) if args.profile else run()
    ended, cpu, replays = time.perf_counter(), time.process_time() - cpu, result.replays
    print(json.dumps({
        "wall": ended - began, "list": marks["plan"] - began, "fetch": marks["signals"] - marks["plan"],
        "replay": ended - marks["signals"], "cpu": cpu, "rss_before": rss_before, "rss": peak_rss_mib(),
        "requests": result.requests, "steps": steps.count, "workloads": len(replays),
        "evaluations": sum(r.evaluations for r in replays), "saved": sum(r.gpu_hours_saved for r in replays),
        "up": sum(r.gpu_hours_always_up for r in replays), "unknown": sum(r.unknown_steps for r in replays),
        "errors": len(result.signal_errors) + len(result.failures),
    }))
    return 0


def peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM: a process's own peak RSS (ru_maxrss also counts its parent's, kept over fork and exec)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), 0.0)


def spawn(command: list[str], *, timeout_seconds: float) -> tuple[int, float, float, str, str]:
    """`command` run to its end (killed after the timeout): exit code, seconds, peak RSS MiB, stdout, stderr."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCALER_")}
    began, peak = time.perf_counter(), 0.0
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=common.ROOT)
    try:
        while True:
            try:
                out, err = process.communicate(timeout=0.02)
                return process.returncode, time.perf_counter() - began, peak, out.decode(), err.decode()
            except subprocess.TimeoutExpired:
                peak = max(peak, peak_rss_mib(process.pid))
                if time.perf_counter() - began > timeout_seconds:
                    process.kill()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


HEADER = (f"{'run':<26}{'wl':>5}{'steps':>7}{'wall':>8}{'list':>7}{'fetch':>7}{'replay':>7}{'cpu':>8}"
          f"{'peak RSS':>9}{'(start)':>8}{'req c/s':>10}{'sending':>8}{'built':>7}  {'decide() calls / steps x wl':<28}"
          f"{'GPU-h saved / up':<19}{'unknown':>8}{'err':>4}{'late':>5}")


def measure(args, server: FakePrometheus, namespaces: list[str], *, label: str, start: int, count: int,
            profile: bool = False) -> None:
    """One timed backtest() in a child process; prints its row."""
    built = server.prepare(namespaces, start=start, count=count)
    code, _, _, out, err = spawn(
        [sys.executable, __file__, "--child", "--kubeconfig", args.kubeconfig, "--policies", args.policies,
         "--prometheus-url", args.prometheus_url, "--start", str(start), "--count", str(count)]
        + (["--profile"] if profile else []), timeout_seconds=args.deadline_seconds)
    *profile_lines, last = out.strip().splitlines() or [""]
    if code != 0:
        raise SystemExit(f"{label}: the child failed ({code}):\n{out}\n{err}")
    print("\n".join(profile_lines), end="\n" if profile_lines else "")
    r = json.loads(last)
    print(f"{label:<26}{r['workloads']:>5}{r['steps']:>7}{r['wall']:>7.2f}s{r['list']:>6.2f}s{r['fetch']:>6.2f}s"
          f"{r['replay']:>6.2f}s{r['cpu']:>7.2f}s{r['rss']:>6.0f}MiB{r['rss_before']:>5.0f}MiB"
          f"{r['requests']:>5}/{server.requests:<4}{server.serve_seconds:>7.2f}s{built:>6.1f}s  "
          f"{r['evaluations']:>10,} / {r['steps'] * r['workloads']:<14,}{r['saved']:>7,.0f} / {r['up']:<9,.0f}"
          f"{r['unknown']:>8,}{r['errors']:>4}{server.built_late:>5}", flush=True)


def run_cli(args, server: FakePrometheus, namespaces: list[str], *, start: int, count: int) -> None:
    """`scaler backtest -o json` as users run it, once; prints its row."""
    built, form = server.prepare(namespaces, start=start, count=count), "%Y-%m-%dT%H:%M:%SZ"
    command = [str(SCALER), "backtest", "--from", time.strftime(form, time.gmtime(start)),
               "--to", time.strftime(form, time.gmtime(start + 60 * (count - 1))), "--step", "1m", "-o", "json",
               "--policies", args.policies, "--prometheus-url", args.prometheus_url, "--kubeconfig", args.kubeconfig]
    code, seconds, rss, out, err = spawn(command, timeout_seconds=args.deadline_seconds)
    print(" ".join(command))
    if code not in (0, 4):
        raise SystemExit(f"scaler backtest failed ({code}):\n{err}")
    total = (document := json.loads(out))["total"]
    print(f"CLI exit {code}: {seconds:.2f}s wall (process start to exit), peak RSS {rss:.0f} MiB, {document['steps']}"
          f" steps, {total['workloads']} workloads, {document['prometheusRequests']} requests (server "
          f"{server.requests}, {server.serve_seconds:.2f}s sending, {server.built_late} late, built in {built:.1f}s), "
          f"{total['gpuHoursSaved']:,.0f} of {total['gpuHoursAlwaysUp']:,.0f} GPU-h saved, {len(out) >> 20} MiB JSON")


def grow(kube, namespaces: list[str], server: FakePrometheus, size: int) -> None:
    """Deployments up to `size` in all, spread evenly over the namespaces."""
    for index, namespace in enumerate(namespaces):
        have, want = server.live.get(namespace, 0), size // POLICIES + (1 if index < size % POLICIES else 0)
        common.create_deployments(kube, namespace, [
            common.deployment(f"w-{number:03d}", replicas=(index * 7 + number) % 4 + 1, labels={"bench": "backtest"})
            for number in range(have, want)])
        server.live[namespace] = max(have, want)


def run_all(args, kube, namespaces: list[str], sizes: list[int]) -> None:
    """Set up, then every timed run in order of size."""
    end = int(time.time()) // 60 * 60 - 60
    start, count, began = end - args.days * 86400, args.days * 1440 + 1, time.perf_counter()
    server = FakePrometheus(namespaces, base=start - 60 * IDLE_MINUTES, minutes=count + IDLE_MINUTES)
    print(f"signal data: {2 * POLICIES * PER_NAMESPACE} series x {count + IDLE_MINUTES:,} minutes generated in "
          f"{time.perf_counter() - began:.1f}s (each run's answers are built ahead: 'built')")
    threading.Thread(target=server.serve_forever, name="fake-prometheus", daemon=True).start()
    args.prometheus_url = f"http://127.0.0.1:{server.server_address[1]}"
    args.policies = tempfile.mkdtemp(prefix="bt-bench-policies-")
    try:
        for index, namespace in enumerate(namespaces):
            Path(args.policies, f"{namespace}.yaml").write_text(policy_file(namespace, index))
        print("scaler validate:", subprocess.run([str(SCALER), "validate", args.policies], stdout=subprocess.PIPE,
                                                 text=True, timeout=120, check=True).stdout.strip())
        for namespace in namespaces:
            common.create_namespace(kube, namespace)
        print(HEADER, flush=True)
        for size in sizes:
            grow(kube, namespaces, server, size)
            measure(args, server, namespaces, label=f"backtest() {args.days}d", start=start, count=count)
        measure(args, server, namespaces, label="backtest() 1d", start=end - 86400, count=1441)
        run_cli(args, server, namespaces, start=start, count=count)
        if args.profile:
            measure(args, server, namespaces, label="backtest() in cProfile", start=start, count=count, profile=True)
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(args.policies, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="250,500,1000", help=f"workloads, at most {POLICIES * PER_NAMESPACE}")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--kubeconfig", help="a running cluster (default: start or reuse the local one)")
    parser.add_argument("--profile", action="store_true", help="also a cProfile run at the largest size")
    parser.add_argument("--deadline-seconds", type=int, default=1800, help="everything stops by then")
    for hidden, kind in (("--policies", str), ("--prometheus-url", str), ("--start", int), ("--count", int)):
        parser.add_argument(hidden, type=kind, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = sorted(min(int(size), POLICIES * PER_NAMESPACE) for size in args.sizes.split(","))
    for signum in (signal.SIGTERM, signal.SIGALRM):  # SystemExit: the namespaces are deleted all the same
        signal.signal(signum, lambda number, _frame: sys.exit(f"stopped by signal {number}"))
    signal.alarm(args.deadline_seconds)
    print(f"load average at start: {' '.join(f'{load:.2f}' for load in os.getloadavg())}, {os.cpu_count()} CPUs")
    cluster, owned = (None, False) if args.kubeconfig else common.start_cluster("bench-backtest")
    args.kubeconfig = args.kubeconfig or str(cluster.kubeconfig)
    kube = Kube.from_environment(kubeconfig=args.kubeconfig, pool_size=24)
    namespaces = [f"bt-bench-{run_id}-{index:02d}" for run_id in [uuid.uuid4().hex[:4]] for index in range(POLICIES)]
    try:
        run_all(args, kube, namespaces, sizes)
    finally:
        for namespace in namespaces:
            try:
                kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
            except Exception as error:  # noqa: BLE001 - never created, or already going: the others still go
                print(f"namespace {namespace} not deleted: {error}", file=sys.stderr)
        if owned:
            common.local_cluster.down(cluster.state_dir)
        print(f"load average at end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
