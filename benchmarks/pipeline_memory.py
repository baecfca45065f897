"""Peak memory of `fastlenet predict SRC...` over its whole process tree (the main process and
its decode workers), sampled from /proc every 50 ms (Linux).

    python benchmarks/pipeline_memory.py million-idx3-ubyte.gz
    python benchmarks/pipeline_memory.py folder_of_100000_pngs/ --jobs 2

Arguments after the sources go to `fastlenet predict`. Output goes to /dev/null.
"""
import os
import subprocess
import sys
import time


def tree(pid):
    out = [pid]
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                for c in f.read().split():
                    out += tree(int(c))
    except OSError:
        pass
    return out


def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv):
    if not argv or not os.path.isdir("/proc"):
        sys.exit(__doc__)
    p = subprocess.Popen([sys.executable, "-m", "fastlenet", "predict", *argv, "--no-progress"],
                         stdout=subprocess.DEVNULL)
    peak, t = 0, time.time()
    while p.poll() is None:
        peak = max(peak, sum(rss(q) for q in tree(p.pid)))
        time.sleep(0.05)
    print(f"fastlenet predict {' '.join(argv)}: exit {p.returncode}, {time.time() - t:.1f} s, "
          f"peak RSS of the process tree {peak / 2**20:.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
