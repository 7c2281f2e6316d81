"""Whole-process cold start: how long a command takes from exec to exit, median of N runs.

Run by scripts/cold-start.sh. Usage: measure.py RUNS LABEL -- COMMAND... [;; LABEL -- COMMAND...]
Prints one Markdown table row per command: label, median, fastest.
"""

import statistics
import subprocess
import sys
import time


def measure(runs, command):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return statistics.median(times), min(times)


def main():
    runs = int(sys.argv[1])
    cases, current = [], []
    for arg in sys.argv[2:]:
        if arg == ";;":
            cases.append(current)
            current = []
        else:
            current.append(arg)
    if current:
        cases.append(current)
    for case in cases:
        split = case.index("--")
        label, command = " ".join(case[:split]), case[split + 1 :]
        median, fastest = measure(runs, command)
        print(f"| {label} | {median * 1e3:.2f} ms | {fastest * 1e3:.2f} ms |", flush=True)


if __name__ == "__main__":
    main()
