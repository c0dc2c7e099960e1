#!/usr/bin/env python3
"""Aggregate generation throughput of `zaya serve` under concurrent streams (loopback only, stdlib only).

Starts `zaya serve --parallel P` on a free loopback port (or uses a running server given with --url), then for each
concurrency C sends C streaming /v1/completions requests at once: distinct random token-id prompts, greedy,
`ignore_eos` so every stream generates exactly -n tokens. Reports per concurrency the aggregate tokens/s (all
completion tokens / wall time from the first request to the last token), the mean per-stream rate, the time to
the first streamed chunk, and the speed-up over one stream, as a markdown table (and JSON with --json).

    python3 bench/serve_load.py --zaya build/zaya -m /tmp/z8-mxfp4 --parallel 4 -c 1,4 -n 64 -t 2
"""
import argparse
import http.client
import json
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def stream_completion(host, port, prompt_ids, n_tokens, result, start_barrier):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    body = json.dumps({"model": "m", "prompt": prompt_ids, "max_tokens": n_tokens, "temperature": 0,
                       "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}})
    start_barrier.wait()
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        result["error"] = f"HTTP {resp.status}: {resp.read()[:200]!r}"
        return
    first = None
    chunks = 0
    usage = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        obj = json.loads(data)
        if obj.get("usage"):
            usage = obj["usage"]
        if obj.get("choices"):
            # Any token chunk counts (a token's text may be held back until a UTF-8 sequence completes).
            chunks += 1
            if first is None:
                first = time.perf_counter()
    t1 = time.perf_counter()
    conn.close()
    result.update(start=t0, first=first or t1, end=t1,
                  tokens=usage["completion_tokens"] if usage else chunks)


def run_concurrency(host, port, c, n_tokens, prompt_len, vocab, seed):
    rng = random.Random(seed)
    prompts = [[rng.randrange(vocab // 4, vocab) for _ in range(prompt_len)] for _ in range(c)]
    results = [dict() for _ in range(c)]
    barrier = threading.Barrier(c)
    threads = [threading.Thread(target=stream_completion, args=(host, port, prompts[i], n_tokens, results[i], barrier))
               for i in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if "error" in r:
            sys.exit(f"serve_load: request failed: {r['error']}")
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    # Rate per stream over its whole request (prompt included): chunks carry text only, and a model whose tokens
    # decode to nothing printable (a random one) sends its text at the end, so token times are not observable.
    per_stream = [r["tokens"] / (r["end"] - r["start"]) for r in results]
    ttft = [r["first"] - r["start"] for r in results]
    return {"concurrency": c, "completion_tokens": tokens, "wall_s": end - start,
            "aggregate_tok_s": tokens / (end - start),
            "mean_stream_tok_s": sum(per_stream) / len(per_stream) if per_stream else 0.0,
            "mean_ttft_s": sum(ttft) / len(ttft)}


def start_server(args):
    cmd = [args.zaya, "serve", "-m", args.model, "--host", "127.0.0.1", "--port", "0", "--parallel",
           str(args.parallel), "-q"]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    cmd += args.serve_arg
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + args.load_timeout
    for line in proc.stderr:
        m = re.search(r"listening on http://([^:/]+):(\d+)", line)
        if m:
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1), int(m.group(2))
        if time.time() > deadline:
            break
    proc.kill()
    sys.exit("serve_load: the server did not start (no 'listening on' line)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zaya", default="build/zaya", help="zaya binary (when the script starts the server)")
    ap.add_argument("-m", "--model", help="model folder: start `zaya serve` on it")
    ap.add_argument("--url", help="use a running server instead (loopback only), e.g. http://127.0.0.1:8080")
    ap.add_argument("--parallel", type=int, default=4, help="server slots (--parallel)")
    ap.add_argument("-t", "--threads", type=int, default=0, help="server worker threads")
    ap.add_argument("-c", "--concurrency", default="1,4", help="comma-separated concurrent stream counts")
    ap.add_argument("-n", "--tokens", type=int, default=64, help="completion tokens per stream")
    ap.add_argument("-p", "--prompt-tokens", type=int, default=32, help="prompt tokens per stream")
    ap.add_argument("-r", "--repetitions", type=int, default=2, help="runs per concurrency (best is reported)")
    ap.add_argument("--vocab", type=int, default=0, help="prompt ids are drawn below this (default: the model's "
                    "vocab_size with -m, else 262144)")
    ap.add_argument("--load-timeout", type=float, default=600)
    ap.add_argument("--serve-arg", action="append", default=[], help="extra argument for zaya serve (repeatable)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if bool(args.model) == bool(args.url):
        ap.error("give exactly one of -m (start a server) or --url (a running one)")
    if not args.vocab:
        args.vocab = 262144
        if args.model:
            with open(f"{args.model}/config.json") as f:
                cfg = json.load(f)
            args.vocab = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size") or args.vocab
    proc = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        if u.hostname not in LOOPBACK:
            ap.error("--url must be a loopback address: this load generator is not for remote servers")
        host, port = u.hostname, u.port or 80
    else:
        proc, host, port = start_server(args)
    try:
        conc = [int(x) for x in args.concurrency.split(",")]
        # Warm-up: one short request (first-touch costs, allocator arenas).
        run_concurrency(host, port, 1, 4, args.prompt_tokens, args.vocab, 7)
        rows = []
        for c in conc:
            best = None
            for rep in range(args.repetitions):
                r = run_concurrency(host, port, c, args.tokens, args.prompt_tokens, args.vocab, 1000 * c + rep)
                if best is None or r["aggregate_tok_s"] > best["aggregate_tok_s"]:
                    best = r
            rows.append(best)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    one = next((r["aggregate_tok_s"] for r in rows if r["concurrency"] == 1), None)
    for r in rows:
        r["vs_one_stream"] = r["aggregate_tok_s"] / one if one else None
    if args.json:
        print(json.dumps({"model": args.model or args.url, "parallel": args.parallel, "tokens": args.tokens,
                          "rows": rows}, indent=2))
        return
    print(f"\n| streams | aggregate tok/s | per-stream tok/s | mean time to the first chunk s | vs one stream |")
    print("|---|---|---|---|---|")
    for r in rows:
        vs = f"{r['vs_one_stream']:.2f}x" if r["vs_one_stream"] else ""
        print(f"| {r['concurrency']} | {r['aggregate_tok_s']:.2f} | {r['mean_stream_tok_s']:.2f} | "
              f"{r['mean_ttft_s']:.3f} | {vs} |")


if __name__ == "__main__":
    main()
