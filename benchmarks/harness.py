"""The machinery the benchmark scripts share (they keep what they measure and render).

Owns: RESULTS.md's sections (which script writes which, replacing one in place) and the
JSON files in benchmarks/out; the record of a run (command line, environment: machine,
OS, versions, interlace's source and commit, JAX backend; its markdown lines; the load
average); timing (wall, CPU, JAX compile seconds), peak RSS, CPU seconds of a child,
medians; a worker's memory cap; child processes read on a thread (``Child``) with a stall
watchdog (output pending, almost no CPU for two windows: a deadlock), a timeout and a
peak-RSS sampler, and on it ``run_streaming``, the JSON-line ``Worker`` (``say`` and
``serve`` are the worker's side) and the long-lived Rscript ``RDriver`` (its side is
benchmarks/harness.R). Importing it imports neither jax nor interlace, so that a worker
can cap its memory, and the runner set up the compilation cache, first.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"
# Sections of RESULTS.md that other scripts than run_benchmarks.py write, each replacing its
# own in place; run_benchmarks.py rewrites what is above the first of them.
SECTIONS = {
    "inference": "## Inference:",
    "scaling": "## Scaling (synthetic crossed designs)",
    "latency": "## Latency",
    "glmm": "## GLMMs",
}
PACKAGES = ("jax", "jaxlib", "optax", "numpy", "pandas", "interlace")
POLL_S = 2.0  # how often a waiting parent samples a child's peak RSS
STALL_WINDOW_S = 30.0  # a child with output pending and under STALL_CPU_S of CPU in two
STALL_CPU_S = 1.0  # windows of STALL_WINDOW_S is deadlocked, not slow


# --- RESULTS.md and benchmarks/out ---------------------------------------------------------
def _heading_at(text: str, heading: str) -> int:
    """Where the line starting with ``heading`` starts in ``text``; -1: nowhere."""
    if text.startswith(heading):
        return 0
    i = text.find("\n" + heading)
    return i + 1 if i >= 0 else -1


def replace_section(md: str, heading: str, path: Path = RESULTS) -> None:
    """Put ``md`` into RESULTS.md in place of the section starting with ``heading`` (up to
    the next ``## ``), or at the end if there is none."""
    text = path.read_text() if path.exists() else ""
    start = _heading_at(text, heading)
    if start < 0:
        path.write_text(text.rstrip() + "\n\n" + md.rstrip() + "\n")
        return
    nxt = text.find("\n## ", start + 1)
    rest = text[nxt + 1 :] if nxt >= 0 else ""
    path.write_text(text[:start] + md.rstrip() + "\n" + ("\n" + rest if rest else ""))


def replace_head(md: str, path: Path = RESULTS) -> None:
    """Replace what is above the first of SECTIONS (run_benchmarks.py's part) with ``md``."""
    old = path.read_text() if path.exists() else ""
    starts = [i for i in (_heading_at(old, h) for h in SECTIONS.values()) if i >= 0]
    kept = old[min(starts) :] if starts else ""
    path.write_text(md.rstrip() + "\n\n" + kept if kept else md)


def save_json(obj, *paths: Path) -> None:
    for path in paths:
        path.write_text(json.dumps(obj, indent=2) + "\n")


# --- the record of a run ---------------------------------------------------------------------
def command_line() -> str:
    """This run's command as typed from the repository root (PYTHONPATH first, if set)."""
    script = Path(sys.argv[0]).resolve()
    argv = [
        str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else sys.argv[0],
        *sys.argv[1:],
    ]
    path = os.environ.get("PYTHONPATH")
    return (f"PYTHONPATH={shlex.quote(path)} " if path else "") + shlex.join(["python", *argv])


def loadavg(text: bool = False):
    """The 1, 5 and 15 min load averages (the machine may be shared): a list, or "a b c"."""
    try:
        la = os.getloadavg()
    except OSError:
        return "n/a" if text else None
    return " ".join(f"{x:.2f}" for x in la) if text else [round(x, 2) for x in la]


def _lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def meminfo_kib(key: str) -> int:
    """A field of /proc/meminfo (MemTotal, MemAvailable, ...), KiB."""
    return next(int(ln.split()[1]) for ln in _lines("/proc/meminfo") if ln.startswith(key + ":"))


def _git(*args: str) -> str:
    if shutil.which("git") is None:
        return ""
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "n/a"


def environment(interlace=None) -> dict:
    """The JSON's "environment": CPU, cores (and those allowed), RAM, OS, Python and package
    versions, JAX backend and devices; given the imported ``interlace``, where it came from
    (this working tree at which commit, or an installed copy) and its compilation cache;
    without it (bench_scaling.py's parent does not import it), this checkout's commit."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in _lines("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    os_name = platform.platform()
    if Path("/etc/os-release").exists():
        rel = dict(ln.split("=", 1) for ln in _lines("/etc/os-release") if "=" in ln)
        os_name = f"{rel.get('PRETTY_NAME', '').strip(chr(34))} ({platform.platform()})"
    commit = _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--", "interlace"):
        commit += " + uncommitted changes under interlace/"
    env = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "ram_gib": round(meminfo_kib("MemTotal") / 2**20, 1),
        "os": os_name,
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
    }
    if interlace is None:
        env["interlace_commit"] = commit
    else:
        import jax

        where = Path(interlace.__file__).resolve().parent
        if where == ROOT / "interlace":  # say which source was measured
            where = "working tree at " + (commit or "unknown commit")
        env["interlace_from"] = str(where)
        env["compilation_cache_dir"] = jax.config.jax_compilation_cache_dir
    return {**env, **accelerator()}


def accelerator() -> dict:
    """Where JAX runs in this process: backend and device kinds."""
    import jax

    return {
        "jax_backend": jax.default_backend(),
        "jax_devices": sorted({d.device_kind for d in jax.devices()}),
    }


def accelerator_line(env: dict) -> str:
    """RESULTS.md's statement of what was (not) measured on a GPU, from ``accelerator()``."""
    backend = env.get("jax_backend")
    if backend is None:
        return "- Accelerator: not recorded for this run."
    if backend == "cpu":
        return (
            "- Accelerator: none (JAX backend `cpu`). **Nothing here was measured on a "
            "GPU**: no GPU was available to this project's runs. The same code runs "
            "unchanged on one (every operation on the hot path is a JAX/XLA op), but its "
            "GPU speed and memory are untested."
        )
    return (
        f"- Accelerator: JAX backend `{backend}` ({', '.join(env.get('jax_devices', []))}): "
        "interlace's timings here ran on it; lme4 ran on the CPU."
    )


def environment_lines(env: dict, lme4: str, compact: bool = False) -> list[str]:
    """A section's environment bullets; ``compact``: the scaling section's form."""
    pk = env.get("packages", {})
    if compact:
        return [
            f"- Machine: {env['cpu']}, {env['cores']} cores (allowed: {env['affinity']}), "
            f"{env['ram_gib']} GiB RAM; {env['os']}",
            accelerator_line(env),
            f"- Python {env['python']}; jax {pk['jax']}, jaxlib {pk['jaxlib']}, numpy "
            f"{pk['numpy']}, pandas {pk['pandas']}, optax {pk['optax']}; interlace "
            f"{pk['interlace']} (commit {env['interlace_commit'] or 'unknown'})",
            f"- lme4: {lme4}",
        ]
    return [
        f"- Machine: {env.get('cpu')}, {env.get('cores')} cores"
        + (f", {env['ram_gib']} GiB RAM" if "ram_gib" in env else "")
        + (f"; processes allowed on CPUs {env['affinity']}" if "affinity" in env else ""),
        f"- OS: {env.get('os')}",
        accelerator_line(env),
        f"- Python {env.get('python')}; "
        + ", ".join(f"{k} {v}" for k, v in pk.items())
        + f" (interlace imported from {env.get('interlace_from')})",
        f"- lme4: {lme4}",
    ]


# --- measuring ---------------------------------------------------------------------------------
def make_timer():
    """Register a compile-time listener; return ``timed(fn) -> (fn(), timings)``: the call's
    wall, CPU (all threads) and JAX tracing + compile seconds (from jax.monitoring)."""
    import jax

    compile_s = [0.0]

    def on_event(name, secs, **_):
        if name.startswith("/jax/core/compile/"):
            compile_s[0] += secs

    jax.monitoring.register_event_duration_secs_listener(on_event)

    def timed(fn):
        c0, t0, k0 = time.process_time(), time.perf_counter(), compile_s[0]
        out = fn()
        return out, {
            "seconds": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "compile_s": compile_s[0] - k0,
        }

    return timed


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak RSS of this process (ru_maxrss), or of process ``pid`` so far (VmHWM; 0: gone)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        return next(
            int(ln.split()[1]) / 1024
            for ln in _lines(f"/proc/{pid}/status")
            if ln.startswith("VmHWM:")
        )
    except (OSError, StopIteration):
        return 0.0


def session_peak_rss_mib(sid: int) -> float:
    """The largest peak RSS among the live processes of session ``sid``."""
    best = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:  # field 6 of /proc/PID/stat: the session id
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                best = max(best, peak_rss_mib(int(pid)))
        except (OSError, ValueError, IndexError):
            continue
    return best


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (None once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cap_memory(limit_bytes: int | None) -> None:
    """Cap this process's data segment before jax is imported, so that a runaway allocation
    fails here (MemoryError, RESOURCE_EXHAUSTED) instead of waking the OOM killer of a
    shared machine. RLIMIT_DATA, not RLIMIT_AS: with RLIMIT_AS at 20 GiB, XLA's CPU backend
    ran the deviance ~20x slower on one thread (jaxlib 0.10.2)."""
    if limit_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (int(limit_bytes), int(limit_bytes)))


def median(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else None


def med(runs: list[dict], key: str = "seconds"):
    """The median of ``key`` over timed repetitions (None without any)."""
    return median(r[key] for r in runs)


def summary(runs: list[dict]) -> dict | None:
    if not runs:
        return None
    return {
        "median_s": med(runs),
        "min_s": min(r["seconds"] for r in runs),
        "max_s": max(r["seconds"] for r in runs),
        "cpu_median_s": med(runs, "cpu_s"),
        "n": len(runs),
        "seconds": [r["seconds"] for r in runs],
    }


# --- child processes ---------------------------------------------------------------------------
class Stalled(Exception):
    """A child made no progress (a deadlock; see bench_vectorized.py) and was killed."""


class WorkerDied(Exception):
    """A worker exited while a reply was pending (e.g. the OOM killer)."""


class WorkerError(Exception):
    """A worker raised (the traceback is in args[0])."""


class Child:
    """A child process whose output lines a thread reads, so that waiting for one
    (``line``) can watch the child: sample its peak RSS every ``poll_s``, raise Stalled
    (``stall``) or TimeoutError (past ``deadline``), killing it. ``group``: in its own
    session, whose largest peak RSS is sampled and which a kill takes whole."""

    def __init__(
        self,
        cmd,
        *,
        env=None,
        cwd=ROOT,
        stdin=False,
        merge_stderr=False,
        group=False,
        stall=True,
        poll_s=POLL_S,
    ):
        self.group, self.stall, self.poll_s, self.peak_rss_mib = group, stall, poll_s, 0.0
        self.t0 = self._sampled = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            text=True,
            start_new_session=group,
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else None,
        )
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.progress()

    def _read(self):
        for ln in self.proc.stdout:
            self._queue.put((time.perf_counter() - self.t0, ln.rstrip("\n")))
        self._queue.put(None)

    def progress(self) -> None:
        """Restart the stall watchdog (a line came in, or a request went out)."""
        self._idle, self._window = 0, time.perf_counter()
        self._cpu_mark = (cpu_seconds(self.proc.pid) or 0.0) if self.stall else 0.0

    def sample_rss(self) -> None:
        rss = (session_peak_rss_mib if self.group else peak_rss_mib)(self.proc.pid)
        self.peak_rss_mib, self._sampled = max(self.peak_rss_mib, rss), time.perf_counter()

    def _watch(self) -> None:
        self._window, cpu = time.perf_counter(), cpu_seconds(self.proc.pid)
        if cpu is None:
            return
        self._idle = self._idle + 1 if cpu - self._cpu_mark < STALL_CPU_S else 0
        self._cpu_mark = cpu
        if self._idle >= 2:
            self.kill()
            raise Stalled(
                {
                    "idle_s": self._idle * STALL_WINDOW_S,
                    "worker_cpu_s": cpu,
                    "worker_peak_rss_mib": self.peak_rss_mib,
                }
            )

    def line(self, deadline: float | None = None):
        """The next line, ``(seconds since the start, text)``; None once the child has
        ended. ``deadline``: a time.perf_counter() value."""
        while True:
            now = time.perf_counter()
            if now - self._sampled >= self.poll_s:
                self.sample_rss()
            if deadline is not None and now >= deadline:
                self.kill()
                raise TimeoutError(now - self.t0)
            if self.stall and now - self._window >= STALL_WINDOW_S:
                self._watch()
            wait = self.poll_s if deadline is None else min(self.poll_s, deadline - now)
            try:
                item = self._queue.get(timeout=max(wait, 0.01))
            except queue.Empty:
                continue
            if item is None:
                self.proc.wait()
            elif self.stall:
                self.progress()
            return item

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.progress()

    def kill(self) -> None:
        try:
            if self.group:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session this child started
            else:
                self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()

    def close(self, last_line: str | None = None, timeout: float = 60) -> None:
        """Send ``last_line`` (its "quit") and wait for the child to exit; else kill it."""
        try:
            if last_line is not None:
                self.send(last_line)
            self.proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            self.kill()


def run_streaming(cmd, *, timeout, env=None, cwd=ROOT, prefix="", quiet=None) -> dict:
    """Run ``cmd`` in its own session, echoing its output time-stamped (except lines
    starting with ``quiet``); kill the session after ``timeout`` s. Returns
    dict(rc, wall_s, timed_out, lines=[(t, line)], sampled_peak_mib)."""
    child = Child(cmd, env=env, cwd=cwd, merge_stderr=True, group=True, stall=False, poll_s=1.0)
    lines, timed_out = [], False
    try:
        while (item := child.line(deadline=child.t0 + timeout)) is not None:
            lines.append(item)
            if not (quiet and item[1].startswith(quiet)):
                print(f"{prefix}[{item[0]:8.2f}s] {item[1]}", flush=True)
    except TimeoutError:
        timed_out = True
        print(
            f"{prefix}timeout after {timeout} s: killed process group {child.proc.pid}", flush=True
        )
    return {
        "rc": child.proc.returncode,
        "wall_s": time.perf_counter() - child.t0,
        "timed_out": timed_out,
        "lines": lines,
        "sampled_peak_mib": child.peak_rss_mib,
    }


def say(tag: str, obj) -> None:
    """A worker's message to its driver: one line ``TAG\\t<json>``."""
    sys.stdout.write(f"{tag}\t{json.dumps(obj)}\n")
    sys.stdout.flush()


def serve(handle) -> None:
    """A worker's loop: answer each JSON request on stdin with RESULT ``handle(request)``,
    or ERROR and the traceback, until ``{"op": "quit"}``."""
    import traceback

    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request.get("op") == "quit":
                break
            say("RESULT", handle(request))
        except Exception:  # reported to the driver, which records it
            say("ERROR", traceback.format_exc())


def bigger_pool_env() -> dict:
    """A worker's environment after a deadlock: XLA's CPU intra-op pool enlarged (NPROC,
    read when jax starts) to max(4, 2 x the usable cores)."""
    return {"NPROC": str(max(4, 2 * len(os.sched_getaffinity(0))))}


class Worker(Child):
    """A Python worker process (a script run with --worker) that answers with ``say``
    lines: RESULT, ERROR (it raised) or another tag (progress, to ``on_line``). Its
    environment adds ``env`` and ``extra_env`` (recorded with the results) to ours."""

    def __init__(self, cmd, *, env=None, extra_env=None, mem_limit_gb=None):
        self.extra_env, self.mem_limit_gb = dict(extra_env or {}), mem_limit_gb
        super().__init__(cmd, env={**os.environ, **(env or {}), **self.extra_env}, stdin=True)

    def reply(self, what, on_line=None):
        """The reply to request ``what`` (or a label); Stalled, WorkerDied, WorkerError."""
        t0 = time.perf_counter()
        about = {"request": what, "env": self.extra_env}
        while True:
            try:
                item = self.line()
            except Stalled as st:
                waited = time.perf_counter() - t0
                raise Stalled({**about, "waited_s": waited, **st.args[0]}) from None
            waited, rss = time.perf_counter() - t0, self.peak_rss_mib
            if item is None:
                status = self.proc.returncode
                how = (
                    " (SIGKILL: on Linux most likely the kernel's OOM killer)"
                    if status == -9
                    else ""
                )
                raise WorkerDied(
                    {
                        **about,
                        "exit_status": status,
                        "waited_s": waited,
                        "worker_peak_rss_mib": rss,
                        "mem_limit_gb": self.mem_limit_gb,
                        "message": f"interlace worker exited with status {status}{how} during "
                        f"{what!r}, after {waited:.0f} s; last sampled peak RSS "
                        f"{rss:.0f} MiB; its stderr, if any, is above",
                    }
                )
            tag, _, body = item[1].partition("\t")
            if tag == "RESULT":
                self.sample_rss()
                return json.loads(body)
            if tag == "ERROR":
                tb = json.loads(body)
                raise WorkerError(
                    {
                        **about,
                        "traceback": tb,
                        "worker_peak_rss_mib": rss,
                        "message": f"interlace raised, during {what!r}: "
                        f"{tb.strip().splitlines()[-1]}",
                    }
                )
            if on_line:
                on_line(tag, body)
            else:  # the worker's own output
                print(f"  [worker] {item[1]}", flush=True)

    def ask(self, **request):
        self.send(json.dumps(request))
        return self.reply(request)

    def close(self):
        super().close(json.dumps({"op": "quit"}))


class RDriver(Child):
    """A long-lived Rscript process (``serve`` in harness.R): READY with the versions of R,
    lme4 and the BLAS (``info``, ``note``), then a RESULT per request line; R times lme4
    itself. Alive between requests, it lets a script alternate interlace and lme4."""

    def __init__(self, script: str):
        self.script = script
        super().__init__(["Rscript", str(HERE / script)], stdin=True, stall=False)
        self.info = self._message("READY")
        self.note = (
            f"{self.info['r_version']}, lme4 {self.info['lme4_version']}, BLAS {self.info['blas']}"
        )

    def _message(self, tag):
        text = (self.line() or (0, ""))[1]
        got, _, body = text.partition("\t")
        if got != tag or not body:
            raise RuntimeError(
                f"{self.script}: expected {tag}, got {text!r} "
                f"(exit status {self.proc.poll()}; R's stderr is above)"
            )
        return json.loads(body)

    def ask(self, request: str) -> dict:
        self.send(request)
        return self._message("RESULT")

    def close(self):
        super().close("QUIT")


def lme4_driver(script: str, use: bool = True):
    """``(RDriver, note)``, or ``(None, why not)``: RESULTS.md's "lme4:" line."""
    if not use:
        return None, "skipped (--no-lme4)"
    if shutil.which("Rscript") is None:
        return None, "skipped: Rscript is not on PATH"
    driver = RDriver(script)
    return driver, driver.note
