"""Wall time of the talk presets: each must converge visibly within its budget on 2 shared cores
(DESIGN.md §1: demos converge in under a minute on a laptop CPU).

    .venv/bin/python benchmarks/talk_presets.py [NAME ...]

Runs each preset headless as the lab runs it (``nqs_core.driver.run`` on the lab's settings) and
prints the wall time against its budget and the relative error against the exact reference.  Exit
code 1 when a preset ran over its budget.  The timing lives here, not in the tests:
tests/test_app_presets.py checks the same runs' accuracy, which does not depend on the machine's load.
"""

from __future__ import annotations

import sys
import time

# preset -> wall-time budget in s on 2 loaded cores (measured 2026-11-25 at load ≈ 5: README "The lab")
BUDGETS = {"heisenberg-4x4": 60, "j1j2-no-sign": 150, "j1j2-marshall": 150, "chain-18-k-pi": 150,
           "tfim-critical": 60}


def main(names: list[str]) -> int:
    from app.settings import LabSettings
    from nqs_core.driver import run
    from nqs_core.presets import presets
    from nqs_core.run_reference import find_reference

    talk = [p.name for p in presets("talk")]
    assert set(BUDGETS) == set(talk), "every talk preset needs a budget here"
    over = 0
    for name in names or talk:
        settings = LabSettings(preset=name).to_run_settings()
        ref = find_reference(settings, compute_dmrg=False)
        t0 = time.monotonic()
        result = run(settings, reference=False)
        wall = time.monotonic() - t0
        rel = abs(result.summary["final_energy"] - ref["energy"]) / abs(ref["energy"]) if ref else float("nan")
        ok = wall < BUDGETS[name]
        over += not ok
        print(f"{name:16s} wall {wall:6.1f} s (budget {BUDGETS[name]} s{'' if ok else ', OVER'})  "
              f"relative error {rel:.1e}  {result.phase}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
