"""tools/c/kernel_check.c, the C-only kernel checker that CI also runs for aarch64 under qemu
(tools/c/check_aarch64.sh), compiled and run natively: every ISA level this machine has against
float64 and against the scalar specification. Skips when no C compiler is found."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from _helpers import SEED
from _helpers import ROOT  # noqa: E402



def _compiler():
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "").split(" ")[0]
    for name in (cc, "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def kernel_check(tmp_path_factory):
    cc = _compiler()
    if cc is None or not (ROOT / "tools" / "c" / "kernel_check.c").exists():
        pytest.skip("no C compiler (or no source tree): tools/c/kernel_check.c not built")
    exe = tmp_path_factory.mktemp("kernel_check") / "kernel_check"
    sources = ([str(ROOT / "tools" / "c" / "kernel_check.c")] + sorted(glob.glob(str(ROOT / "csrc" / "*.c")))
               + sorted(glob.glob(str(ROOT / "csrc" / "kernels" / "*.c"))))
    # The flags setup.py uses (without OpenMP: thread invariance is tested through the Net).
    cmd = [cc, "-O3", "-std=gnu11", "-fno-math-errno", "-Wall", f"-I{ROOT / 'csrc'}",
           *sources, "-o", str(exe), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}{r.stderr}"
    return exe


# The session's seed and three more: the tolerances are derived per value (see kernel_check.c),
# so they hold at any seed; tools/c/kernel_check_seeds.sh runs 1,000 (about 10 minutes here).
@pytest.mark.parametrize("offset", range(4))
def test_kernel_check_native(kernel_check, offset):
    r = subprocess.run([str(kernel_check), "--seed", str(SEED + offset)], capture_output=True,
                       text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all checks passed" in r.stdout
    # every level this machine runs was checked, generic included
    import fastlenet

    for isa in fastlenet.available_isas():
        assert f"  {isa} " in r.stdout, isa
