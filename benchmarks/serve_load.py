"""A bounded load test of `longtail serve`: a fixed number of requests from a few concurrent clients.

    python benchmarks/serve_load.py RUN_DIR [--image examples/digits/3.png] [--requests 400] [--clients 1 4]
                                    [--workers 1] [--marker serve-load] [--no-docs]

Starts ``longtail serve RUN_DIR`` on a free port of 127.0.0.1 (nothing else is ever contacted), waits for
``/health``, sends 10 warm-up requests, then for each client count sends ``--requests`` ``POST /predict``
requests of one image each, spread over that many threads with a keep-alive connection each, and stops.
Reports requests/s, the median and 95th-percentile latency and the count of answers that were not 200
(it must be 0), then stops the server. Writes the table into docs/benchmarks.md between the
``--marker`` markers (default ``serve-load``; one block per model served) unless ``--no-docs``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from doc_blocks import machine_line, markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(image: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{image.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server stopped: {proc.stdout.read() if proc.stdout else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    sys.exit("the server did not answer /health in time")


def run_clients(port: int, body: bytes, kind: str, requests: int, clients: int) -> tuple[list[float], int, float]:
    """(latencies in s, non-200 answers, wall time) of ``requests`` requests over ``clients`` threads."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    share = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad = [], 0
        for _ in range(n):
            start = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers={"Content-Type": kind})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            bad += response.status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(n,)) for n in share]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def served_model(run_dir: Path) -> str:
    """The model and input size the run serves, from its config.yaml, for the data line."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    model = config["model"]
    name = model.get("backbone") or model.get("arch") or model["name"]
    size = config["data"].get("image_size")
    return f"model {name}, {f'{size} px' if size else 'native-size'} input"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--image", default=str(ROOT / "examples" / "digits" / "3.png"))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--marker", default="serve-load", help="the docs/benchmarks.md block to write")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    image = Path(args.image)
    body, kind = multipart(image)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "longtail", "serve", args.run_dir, "--port", str(port), "--workers", str(args.workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rows = []
    try:
        wait_ready(port, proc)
        run_clients(port, body, kind, 10, 1)  # warm-up: first-call allocations, lazy imports
        for clients in args.clients:
            latencies, errors, wall = run_clients(port, body, kind, args.requests, clients)
            rows.append([str(clients), str(args.requests), str(errors), f"{args.requests / wall:.1f}",
                         f"{1000 * statistics.median(latencies):.1f}", f"{1000 * percentile(latencies, 95):.1f}"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    table = markdown_table(["clients", "requests", "errors", "requests/s", "p50 ms", "p95 ms"], rows)
    shown = os.path.relpath(image, ROOT) if image.resolve().is_relative_to(ROOT) else str(image)
    command = f"python benchmarks/serve_load.py {args.run_dir} --image {shown} --requests {args.requests} " \
              f"--clients {' '.join(map(str, args.clients))} --workers {args.workers}" + \
              (f" --marker {args.marker}" if args.marker != "serve-load" else "")
    print_and_publish(table, machine_line(torch_threads(), f", {os.cpu_count()} cores, {args.workers} server worker(s)"),
                      command, f"one {image.name} ({image.stat().st_size:,} bytes) per request, run {Path(args.run_dir).name} ({served_model(Path(args.run_dir))})",
                      ROOT / "docs" / "benchmarks.md", args.marker, write=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
