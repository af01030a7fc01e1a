"""Soak test: the device endpoint under steady load for a long time; server RSS and latency over time, to a PNG.

    .venv/bin/pip install -e '.[bench]'                  # matplotlib, for the plot
    .venv/bin/python bench/soak.py                       # 30 min at half the measured maximum rate
    .venv/bin/python bench/soak.py --minutes 2 --sample-s 5 --png docs/soak-2min.png
    .venv/bin/python bench/soak.py --rate 3000 --minutes 60

What runs: ``python -m thingport serve`` on 127.0.0.1 in a fresh temp data dir (rate limits lifted as in
bench/run.py), ``--devices`` devices of one schemaless product, each authenticated once; wrk (keep-alive,
``--connections``) sends Alink property posts cycling through the devices (message + 2 history rows +
latest values per report), paced by a per-request delay. Without ``--rate`` a 10 s unpaced run measures the
maximum first and the soak runs at half of it.

The run is cut into ``--sample-s`` segments (one wrk run each; the pace is corrected between segments to
hold the rate). Each segment records the achieved rate, p50/p99/p99.9 latency, bad replies, and the server's
RSS (VmRSS of its process) and database size. Growth: the least-squares slope of RSS over the second half of
the run (the first half lets caches and allocator arenas fill), in MB per hour. The run passes when that
slope is under ``--max-rss-slope`` MB/h (or the fitted rise over the second half is under ``--rss-floor`` MB,
the allocator's noise: what decides a short run), no reply was bad, and the achieved rate stayed within 10 %
of the target; the exit status says so (0 pass, 1 fail).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import HOST, UNTHROTTLED, BenchError, Client, clean_env, free_port, wait_for_tls  # noqa: E402

from thingport.core.signing import aliyun_sign  # noqa: E402
from thingport.runtime.server import certificate_for  # noqa: E402
from thingport.settings import load_settings  # noqa: E402

LUA = BENCH_DIR / "soak_request.lua"


@dataclass
class Sample:
    t_s: float  # seconds since the soak started (end of the segment)
    rate: float  # good replies per second in the segment
    p50_ms: float
    p99_ms: float
    p999_ms: float
    bad: int
    rss_mb: float
    db_mb: float


# --- the server and its devices -----------------------------------------------------------------------

def cli(data_dir: Path, *args: str) -> dict:
    from click.testing import CliRunner

    from thingport.cli import main

    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir), "--json"], catch_exceptions=False)
    if result.exit_code != 0:
        raise BenchError(f"thingport {' '.join(args)}: {result.output.strip()[-300:]}")
    return json.loads(result.output)


def provision(data_dir: Path, count: int) -> list[dict]:
    product = cli(data_dir, "product", "create", "--name", "soak")
    return [cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", f"soak-{n:05d}")
            for n in range(count)]


def authenticate(client: Client, device: dict) -> str:
    params = {"productKey": device["productKey"], "deviceName": device["deviceName"], "clientId": "soak",
              "timestamp": str(int(time.time() * 1000))}
    sign = aliyun_sign(device["deviceSecret"], params, "hmacsha256")
    body = json.dumps({**params, "signmethod": "hmacsha256", "sign": sign})
    status, reply = client.request("POST", "/auth", {"Content-Type": "application/json"}, body.encode())
    doc = json.loads(reply)
    if status != 200 or doc.get("code") != 0:
        raise BenchError(f"/auth failed: {status} {reply[:200]!r}")
    return str(doc["info"]["token"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def db_mb(data_dir: Path) -> float:
    return sum(p.stat().st_size for p in data_dir.glob("thingport.db*")) / (1 << 20)


# --- load ------------------------------------------------------------------------------------------------

def wrk(port: int, devices_file: Path, seconds: float, connections: int, delay_ms: float) -> dict:
    env = clean_env({"SOAK_DEVICES_FILE": str(devices_file), "SOAK_DELAY_MS": f"{delay_ms:.3f}"})
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(LUA), f"https://{HOST}:{port}/"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("SOAK_RESULT "):
            return json.loads(line.removeprefix("SOAK_RESULT "))
    raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")


def next_delay(delay_ms: float, result: dict, connections: int, target: float) -> float:
    """The per-request delay that would have given ``target`` req/s: each connection's cycle is the delay plus
    what a request costs it (latency, scheduling); keep the second, fit the first."""
    achieved = result["requests"] / (result["duration_us"] / 1e6)
    if achieved <= 0:
        return delay_ms
    cycle_ms = connections * 1000 / achieved
    overhead_ms = max(0.0, cycle_ms - delay_ms)
    fitted = max(0.0, connections * 1000 / target - overhead_ms)
    return delay_ms + 0.5 * (fitted - delay_ms)  # half way: latency swings from segment to segment


# --- verdict and plot ------------------------------------------------------------------------------------

def second_half(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.t_s >= samples[-1].t_s / 2]


def slope_per_hour(samples: list[Sample]) -> float:
    """Least-squares slope of RSS (MB) over the second half of the run, in MB per hour."""
    half = second_half(samples)
    if len(half) < 2:
        return float("nan")
    mean_t = sum(s.t_s for s in half) / len(half)
    mean_r = sum(s.rss_mb for s in half) / len(half)
    var = sum((s.t_s - mean_t) ** 2 for s in half)
    cov = sum((s.t_s - mean_t) * (s.rss_mb - mean_r) for s in half)
    return cov / var * 3600 if var else float("nan")


def rss_problem(samples: list[Sample], slope: float, bound: float, floor_mb: float) -> str | None:
    """Why RSS growth fails the run, or None. A fitted rise over the second half below ``floor_mb`` counts as
    flat whatever its slope: allocator arenas and caches move RSS by about a megabyte, which over a short run
    is a steep slope (a run needs ~10 minutes before the slope bound, not the floor, decides)."""
    half = second_half(samples)
    rise = slope * (half[-1].t_s - half[0].t_s) / 3600 if len(half) > 1 else 0.0
    if slope < bound or rise < floor_mb:
        return None
    return f"RSS grows {slope:+.1f} MB/h (bound {bound:g}), {rise:+.1f} MB over the second half (floor {floor_mb:g})"


def plot(samples: list[Sample], target: float, slope: float, verdict: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t_s / 60 for s in samples]
    fig, (ax_rss, ax_lat, ax_rate) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ax_rss.plot(minutes, [s.rss_mb for s in samples], marker=".", label="server RSS")
    half = second_half(samples)
    if len(half) > 1 and slope == slope:  # the fitted line over the second half (not NaN)
        mean_t = sum(s.t_s for s in half) / len(half)
        mean_r = sum(s.rss_mb for s in half) / len(half)
        ends = (half[0].t_s, half[-1].t_s)
        ax_rss.plot([t / 60 for t in ends], [mean_r + slope / 3600 * (t - mean_t) for t in ends],
                    linestyle="--", color="grey", label="fit, 2nd half")
    ax_rss.set_ylabel("RSS (MB)")
    ax_rss.set_title(f"thingport soak: {target:,.0f} req/s target, RSS slope {slope:+.1f} MB/h (2nd half): {verdict}")
    ax_rss.legend(loc="lower right")
    for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")):
        ax_lat.plot(minutes, [getattr(s, key) for s in samples], marker=".", label=name)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_yscale("log")
    ax_lat.legend(loc="upper right")
    ax_rate.plot(minutes, [s.rate for s in samples], marker=".", label="achieved")
    ax_rate.axhline(target, color="grey", linestyle="--", label="target")
    ax_rate.set_ylabel("good replies/s")
    ax_rate.set_xlabel("minutes")
    ax_rate.set_ylim(bottom=0)
    ax_rate.legend(loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(
        description="Soak the device endpoint; RSS and latency over time (bench/README.md)."
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="soak duration [30]")
    parser.add_argument("--rate", type=float, help="target req/s [half the maximum measured first]")
    parser.add_argument("--devices", type=int, default=100, help="devices reporting [100]")
    parser.add_argument("--connections", type=int, default=200,
                        help="wrk keep-alive connections [200: the pause, not the latency, then sets the rate]")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds per segment/sample [30]")
    parser.add_argument("--max-rss-slope", type=float, default=20.0, help="pass bound, MB per hour [20]")
    parser.add_argument("--rss-floor", type=float, default=2.0,
                        help="a rise over the second half below this many MB passes whatever its slope [2]")
    parser.add_argument("--retention-mb", type=float, help="THINGPORT_RETENTION_MAX_MB for the server [keep all]")
    parser.add_argument("--png", type=Path, default=BENCH_DIR / "soak.png", help="plot [bench/soak.png]")
    parser.add_argument("--json", type=Path, help="also write the samples and verdict here")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir and the server log")
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        print("soak: wrk is missing (apt-get install -y wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="thingport-soak-"))
    data_dir = workdir / "data"
    log = workdir / "server.log"
    port = free_port()
    proc: subprocess.Popen | None = None
    try:
        devices = provision(data_dir, opts.devices)
        files = certificate_for(load_settings(data_dir=data_dir))
        retention = {} if opts.retention_mb is None else {"THINGPORT_RETENTION_MAX_MB": str(opts.retention_mb)}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "thingport", "serve", "--host", HOST, "--port", str(port),
                 "--api-host", HOST, "--api-port", str(free_port()), "--data-dir", str(data_dir)],
                env=clean_env({**UNTHROTTLED, "THINGPORT_LOG_LEVEL": "warning", **retention}), stdout=out,
                stderr=subprocess.STDOUT)
        wait_for_tls(port, proc, log)
        client = Client(port, files.cert, None)
        devices_file = workdir / "devices.tsv"
        devices_file.write_text("".join(
            f"/topic/sys/{d['productKey']}/{d['deviceName']}/thing/event/property/post\t{authenticate(client, d)}\n"
            for d in devices))

        target = opts.rate
        if target is None:
            measured = wrk(port, devices_file, 10, opts.connections, 0)
            maximum = measured["good"] / (measured["duration_us"] / 1e6)
            target = maximum / 2
            print(f"soak: measured maximum {maximum:,.0f} req/s (10 s, {opts.connections} connections);"
                  f" target {target:,.0f}")
        delay_ms = max(0.0, opts.connections * 1000 / target - 1.0)
        print(f"soak: {opts.minutes:g} min at {target:,.0f} req/s, {opts.devices} devices,"
              f" samples every {opts.sample_s:g} s")

        samples: list[Sample] = []
        started = time.monotonic()
        end = started + opts.minutes * 60
        while time.monotonic() < end - opts.sample_s / 2:
            result = wrk(port, devices_file, min(opts.sample_s, end - time.monotonic()), opts.connections, delay_ms)
            seconds = result["duration_us"] / 1e6
            sample = Sample(
                t_s=time.monotonic() - started, rate=result["good"] / seconds, p50_ms=result["p50_us"] / 1000,
                p99_ms=result["p99_us"] / 1000, p999_ms=result["p999_us"] / 1000,
                bad=result["bad"] + result["socket_errors"], rss_mb=rss_mb(proc.pid), db_mb=db_mb(data_dir))
            samples.append(sample)
            print(f"  {sample.t_s / 60:6.1f} min  {sample.rate:8,.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
                  f"p99 {sample.p99_ms:7.2f} ms  p99.9 {sample.p999_ms:7.2f} ms  bad {sample.bad}  "
                  f"RSS {sample.rss_mb:6.1f} MB  db {sample.db_mb:7.1f} MB"
                  + (f"  first bad: {result['sample']}" if sample.bad else ""), flush=True)
            delay_ms = next_delay(delay_ms, result, opts.connections, target)

        slope = slope_per_hour(samples)
        bad = sum(s.bad for s in samples)
        steady = samples[1:] or samples  # the first segment is where the pace is found
        mean_rate = sum(s.rate for s in steady) / len(steady)
        problems = []
        rss_verdict = rss_problem(samples, slope, opts.max_rss_slope, opts.rss_floor)
        if rss_verdict:
            problems.append(rss_verdict)
        if bad:
            problems.append(f"{bad} bad replies or socket errors")
        if abs(mean_rate - target) > 0.1 * target:
            problems.append(f"achieved {mean_rate:,.0f} req/s, not {target:,.0f}")
        verdict = "PASS" if not problems else "FAIL"
        rss = [s.rss_mb for s in samples]
        p99 = sorted(s.p99_ms for s in samples)
        print(f"soak: {verdict}: RSS {rss[0]:.1f} -> {rss[-1]:.1f} MB (max {max(rss):.1f}),"
              f" slope {slope:+.1f} MB/h over the second half; mean {mean_rate:,.0f} req/s;"
              f" p99 median {p99[len(p99) // 2]:.2f} ms, worst {p99[-1]:.2f} ms; {bad} bad"
              + (f" ({'; '.join(problems)})" if problems else ""))
        plot(samples, target, slope, verdict, opts.png)
        print(f"soak: plot in {opts.png}")
        if opts.json:
            opts.json.write_text(json.dumps({"target": target, "slope_mb_per_h": slope, "verdict": verdict,
                                             "problems": problems, "samples": [asdict(s) for s in samples]}, indent=1))
        return 0 if verdict == "PASS" else 1
    except BenchError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if opts.keep:
            print(f"soak: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
