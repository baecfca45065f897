"""The loader under a seeded mutational fuzzer (tests/fuzz_loader.py): every mutant of a valid
weights file loads or raises FormatError naming the file; nothing else, within a 4 GiB address
space. A short run here (FASTLENET_FUZZ_CASES, default 3000: about half a minute on a loaded
2-core machine); long runs are stated in the issue notes. The subprocess timeout only detects
a hang."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from _helpers import SEED
from _helpers import TESTS  # noqa: E402



def test_fuzzed_weight_files_only_load_or_raise_format_error():
    cases = int(os.environ.get("FASTLENET_FUZZ_CASES", "3000"))
    proc = subprocess.run([sys.executable, os.path.join(TESTS, "fuzz_loader.py"), "--cases",
                           str(cases), "--seed", str(SEED)], capture_output=True, text=True,
                          timeout=1800, cwd=TESTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    print(f"fuzz seed {SEED}: {report['counts']} in {report['seconds']} s")
    counts = report["counts"]
    assert sum(counts.values()) == cases
    assert set(counts) <= {"loaded", "FormatError"}, report["first_findings"]
    # the mutants exercise both outcomes (a fuzzer that only breaks files tests little)
    assert counts.get("loaded", 0) > 0 and counts.get("FormatError", 0) > 0
