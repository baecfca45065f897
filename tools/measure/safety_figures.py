"""The figures of issue 10's note, measured the same way every time (each in a fresh process):

    python tools/measure/safety_figures.py idle      # CPU cores used by a request loop, 3 rounds
    python tools/measure/safety_figures.py ctrl-c [ISA TRIALS]  # SIGINT -> KeyboardInterrupt latency
    python tools/measure/safety_figures.py bombs     # time and peak RSS of loading the hostile files
    python tools/measure/safety_figures.py fork      # a fork child after another library's OpenMP
    python tools/measure/safety_figures.py all

Prints medians with min..max. The machine is shared: compare figures within one run.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def py(script: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=timeout, cwd=os.path.join(ROOT, "tests"))
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return proc.stdout


def spread(values) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def idle() -> None:
    out = py("""
    import os, time
    import numpy as np
    import fastlenet
    net = fastlenet.pretrained(num_threads=2)
    x = np.zeros((16, 28, 28), np.uint8)
    net.predict(x)
    tick = os.sysconf("SC_CLK_TCK")
    def cpu():
        f = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / tick
    for _ in range(3):
        c0, t0, busy = cpu(), time.perf_counter(), 0.0
        for i in range(300):
            a = time.perf_counter(); net.predict(x); busy += time.perf_counter() - a
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        print((cpu() - c0) / wall, busy / wall)
    """)
    rows = [tuple(map(float, line.split())) for line in out.splitlines()]
    print(f"idle: batch 16 on 2 threads every 10 ms, 300 calls x 3 rounds: CPU cores "
          f"{spread([r[0] for r in rows])}; time inside predict / wall {spread([r[1] for r in rows])}")


def ctrl_c(trials: int = 5, isas=None) -> None:
    import fastlenet

    for isa in isas or fastlenet.available_isas():
        lat = []
        for _ in range(trials):
            out = py(f"""
            import os, signal, threading, time
            import numpy as np
            import fastlenet
            net = fastlenet.pretrained()
            net.isa = {isa!r}
            x = np.broadcast_to(np.linspace(0, 1, 1024, dtype=np.float32).reshape(32, 32),
                                (2_000_000, 32, 32))
            sent = []
            def interrupt():
                time.sleep(0.5)
                sent.append(time.perf_counter())
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=interrupt).start()
            try:
                net.predict(x)
                print("not interrupted")
            except KeyboardInterrupt:
                print(time.perf_counter() - sent[0])
            """)
            lat.append(float(out))
        print(f"ctrl-c: isa {isa}, {fastlenet.DEFAULT_THREADS} threads, SIGINT 0.5 s into "
              f"2,000,000 images, {trials} trials: latency s {spread(lat)}")


def bombs() -> None:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import _hostile

    with tempfile.TemporaryDirectory() as d:
        for name, make in _hostile.BOMBS.items():
            path = os.path.join(d, name)
            with open(path, "wb") as f:
                f.write(make(mib=1024) if make is _hostile.void_bomb else make())
            out = py(f"""
            import resource, time
            import fastlenet
            t = time.perf_counter()
            try:
                fastlenet.load({path!r}); r = "loaded"
            except Exception as e:
                r = type(e).__name__ + ": " + str(e).split(": ", 1)[1][:90]
            # VmHWM, not ru_maxrss: the latter keeps the pre-exec peak of the forking parent
            hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
            print(f"{{time.perf_counter() - t:.2f}} s, peak RSS {{int(hwm) / 1024:.0f}} MiB: {{r}}")
            """)
            print(f"bomb {name} ({os.path.getsize(path):,} bytes): {out.strip()}")


def fork() -> None:
    with tempfile.TemporaryDirectory() as d:
        src, lib = os.path.join(d, "other.c"), os.path.join(d, "libother.so")
        with open(src, "w") as f:
            f.write("int other_parallel(int n) { int s = 0;\n#pragma omp parallel for "
                    "reduction(+:s) num_threads(n)\nfor (int i = 0; i < 1000; i++) s += i;\n"
                    "return s; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-fopenmp", src, "-o", lib], check=True)
        out = py(f"""
        import ctypes, os, signal, time
        import numpy as np
        import fastlenet
        ctypes.CDLL({lib!r}).other_parallel(2)
        net = fastlenet.pretrained(num_threads=2)
        x = np.zeros((256, 28, 28), np.uint8)
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)
            net.predict(x)
            os._exit(0)
        _, st = os.waitpid(pid, 0)
        took = time.perf_counter() - t
        print("HUNG (killed after 10 s)" if os.WIFSIGNALED(st) else
              f"exit {{os.waitstatus_to_exitcode(st)}} in {{took:.3f}} s")
        """)
        print(f"fork: child predicts 256 images on 2 threads after another library's OpenMP "
              f"region in the parent: {out.strip()}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "ctrl-c" and len(sys.argv) > 3:
        ctrl_c(int(sys.argv[3]), [sys.argv[2]])
        sys.exit()
    for name, fn in (("idle", idle), ("ctrl-c", ctrl_c), ("bombs", bombs), ("fork", fork)):
        if what in (name, "all"):
            fn()
