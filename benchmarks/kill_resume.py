"""Nothing is lost: SIGKILL `museforge train` at random moments, resume each time, compare weights.

    OMP_NUM_THREADS=1 python benchmarks/kill_resume.py             # 10 kills -> results/kill_resume.json
    OMP_NUM_THREADS=1 python benchmarks/kill_resume.py --kills 3 --max-steps 40

The run: the tests' tiny GPT-2 (2 layers, 32 wide, written to a temp dir), full fine-tune on
data/lyrics.txt, CPU, a checkpoint after every step, in a `museforge train` subprocess whose
checkpoint file writes are slowed by --save-delay seconds each (tests/kill_support.py wraps the
CLI; product code is unchanged) so that many kills land in the middle of a checkpoint write.
Each kill comes at a uniformly random moment within --window seconds after the run has made
progress; the next run resumes (--resume). At the end: the largest absolute difference between
the final weights and those of an uninterrupted run (expected: 0), whether every resume started
from the newest complete checkpoint, and whether a half-written checkpoint was ever seen as complete.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import save_json  # noqa: E402
from kill_support import kill_and_resume  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=80)
    ap.add_argument(
        "--save-delay", type=float, default=0.02, help="seconds of sleep after each checkpoint file"
    )
    ap.add_argument(
        "--window", type=float, default=1.0, help="kill within this many seconds after progress"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kill_resume.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="museforge-kill-") as work:
        result = kill_and_resume(
            Path(work),
            args.kills,
            args.max_steps,
            args.save_delay,
            args.window,
            args.seed,
            log=lambda line: print(line, flush=True),
        )
    save_json(result, args.out, show=False)
    print(
        f"\n| kills | during a checkpoint write | during a deletion | runs | max abs weight diff | "
        f"log identical | resumed from newest | incomplete seen | leftovers |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {result['kills']} | {result['kills_during_checkpoint_write']} | {result['kills_during_checkpoint_deletion']} "
        f"| {result['runs']} | {result['max_abs_weight_difference']} | {result['metrics_log_identical']} "
        f"| {result['resumed_from_newest_complete']} | {len(result['incomplete_checkpoints_seen'])} "
        f"| {len(result['leftovers'])} |"
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
