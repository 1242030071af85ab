#!/usr/bin/env python3
"""Agent bench: tiny repos with a failing test and a one-line task, run through
`idlehands agent` against an OpenAI-compatible server; a task passes when its tests pass
afterwards (what the agent says does not count).

Against a real server:
    AGENT_BENCH_BASE_URL=http://127.0.0.1:8080/v1 AGENT_BENCH_MODEL=qwen2.5-coder-1.5b \\
        python3 bench/agent/run.py [--bin target/debug/idlehands] [--timeout 300] [TASK ...]
With the scripted fake server (each task's fake.json replayed; what CI runs):
    python3 bench/agent/run.py --fake [--bin ...]

Prints one line per task (PASS/FAIL, seconds, tokens in/out, tool calls, how the turn ended)
and a summary with the pass rate; `--json FILE` also writes the results. Exit status 0 when
the bench ran, whatever the pass rate; 2 when it could not run (a task whose tests already
pass before the agent starts is an error in the bench, not a pass).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = os.path.join(HERE, "tasks")
ROOT = os.path.dirname(os.path.dirname(HERE))


def have(program):
    return shutil.which(program) is not None


def needs(task):
    return "node" if task["language"] == "javascript" else "python3"


def run_check(cmd, cwd, timeout=120):
    try:
        p = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        return p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        return False, "the check timed out"


def write_config(home, base_url, model, api_key, n_params):
    state = os.path.join(home, ".idlehands")
    os.makedirs(state, exist_ok=True)
    entry = {"id": model, "name": model}
    if n_params:
        entry["parameterCount"] = n_params
    cfg = {
        "models": {"providers": {"bench": {
            "baseUrl": base_url, "apiKey": api_key, "api": "openai-completions",
            "models": [entry]}}},
        "agents": {"defaults": {"model": {"primary": f"bench/{model}"}}},
    }
    with open(os.path.join(state, "idlehands.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def agent_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLEHANDS_")}
    env["HOME"] = home
    return env


def run_task(name, task, args, bin_path, base_url, model, fake_script):
    work = tempfile.mkdtemp(prefix=f"agent-bench-{name}-")
    try:
        repo = os.path.join(work, "repo")
        shutil.copytree(os.path.join(TASKS, name, "repo"), repo)
        ok, _ = run_check(task["check"], repo)
        if ok:
            return {"task": name, "status": "invalid", "why": "tests pass before the agent ran"}
        home = os.path.join(work, "home")
        server = None
        url = base_url
        if fake_script is not None:
            log = os.path.join(work, "fake.log")
            server = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "fake_server.py"), fake_script,
                 "--model", model, "--log", log],
                stdout=subprocess.PIPE, text=True)
            line = server.stdout.readline().strip()
            if not line.startswith("listening on "):
                server.kill()
                return {"task": name, "status": "invalid", "why": f"fake server did not start: {line!r}"}
            url = line[len("listening on "):]
        write_config(home, url, model, args.api_key, args.n_params)
        started = time.monotonic()
        try:
            p = subprocess.run(
                [bin_path, "agent", "--json-stream", "--approve", "always", "--workspace", repo,
                 "--timeout", str(args.timeout), "-m", task["task"]],
                cwd=repo, env=agent_env(home), capture_output=True, text=True,
                timeout=args.timeout + 60)
            out, rc = p.stdout, p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
        seconds = time.monotonic() - started
        if server is not None:
            server.kill()
            server.wait()
        tin = tout = calls = 0
        end, errors = "none", []
        for line in out.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            t = ev.get("type")
            if t == "usage":
                tin += ev.get("input", 0) + ev.get("cache_read", 0)
                tout += ev.get("output", 0)
            elif t == "tool_call":
                calls += 1
            elif t == "turn_end":
                end = ev.get("stop_reason", "?")
            elif t == "error":
                errors.append(f"{ev.get('kind')}: {ev.get('message')}")
        passed, check_out = run_check(task["check"], repo)
        result = {"task": name, "status": "pass" if passed else "fail", "seconds": round(seconds, 1),
                  "tokens_in": tin, "tokens_out": tout, "tool_calls": calls, "turn_end": end,
                  "agent_exit": rc, "errors": errors}
        if not passed:
            result["check_output"] = check_out
        if fake_script is not None and os.path.exists(log):
            with open(log) as f:
                result["fake_errors"] = [json.loads(l)["error"] for l in f if '"error"' in l]
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tasks", nargs="*", help="task names (default: all)")
    ap.add_argument("--bin", default=os.environ.get("IDLEHANDS_BIN") or os.path.join(ROOT, "target", "debug", "idlehands"))
    ap.add_argument("--fake", action="store_true", help="replay each task's fake.json from a scripted fake server")
    ap.add_argument("--fake-script", help="with --fake: replay this script for every task instead")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per task (default 300)")
    ap.add_argument("--api-key", default=os.environ.get("AGENT_BENCH_API_KEY", "none"))
    ap.add_argument("--n-params", type=int, default=None,
                    help="parameterCount to put in the config (default: let the agent ask the server)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    base_url = os.environ.get("AGENT_BENCH_BASE_URL")
    model = os.environ.get("AGENT_BENCH_MODEL", "fake-small" if args.fake else "")
    if not args.fake and (not base_url or not model):
        print("set AGENT_BENCH_BASE_URL and AGENT_BENCH_MODEL, or use --fake", file=sys.stderr)
        return 2
    if not os.path.exists(args.bin):
        print(f"no idlehands binary at {args.bin} (build it with cargo build -p idlehands-cli, or pass --bin)", file=sys.stderr)
        return 2
    names = args.tasks or sorted(os.listdir(TASKS))
    results = []
    print(f"{'task':<26} {'result':<7} {'time':>7} {'tok in':>8} {'tok out':>8} {'calls':>5}  end")
    for name in names:
        with open(os.path.join(TASKS, name, "task.json")) as f:
            task = json.load(f)
        prog = needs(task)
        if not have(prog):
            r = {"task": name, "status": "skipped", "why": f"{prog} is not installed"}
        else:
            script = None
            if args.fake:
                script = os.path.abspath(args.fake_script) if args.fake_script else os.path.join(TASKS, name, "fake.json")
            r = run_task(name, task, args, args.bin, base_url, model, script)
        results.append(r)
        if r["status"] in ("pass", "fail"):
            print(f"{name:<26} {r['status'].upper():<7} {r['seconds']:>6.1f}s {r['tokens_in']:>8} {r['tokens_out']:>8} {r['tool_calls']:>5}  {r['turn_end']}"
                  + (f" ({r['errors'][-1][:80]})" if r["errors"] else ""), flush=True)
        else:
            print(f"{name:<26} {r['status'].upper():<7} {r['why']}", flush=True)
    ran = [r for r in results if r["status"] in ("pass", "fail")]
    passed = [r for r in ran if r["status"] == "pass"]
    skipped = [r for r in results if r["status"] == "skipped"]
    invalid = [r for r in results if r["status"] == "invalid"]
    print(f"pass_rate={len(passed)}/{len(ran)} time={sum(r['seconds'] for r in ran):.1f}s "
          f"tokens_in={sum(r['tokens_in'] for r in ran)} tokens_out={sum(r['tokens_out'] for r in ran)}"
          + (f" skipped={len(skipped)}" if skipped else "") + (f" invalid={len(invalid)}" if invalid else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 2 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
