"""Print the README's baselines-and-ablations table from finished `rlpf train` runs.

    python experiments/rlpf_table.py                      # the default run directories below
    python experiments/rlpf_table.py name=runs/dir ...    # any runs

Each run's report.json holds before (the base model) and after; the Base row is the first run's
before. Every run is measured with the same evaluation prompts, seed and trackers.
"""
import json
import os
import sys

from rlpf.finetune.report import headline_table

RUNS = {
    "SFT-Filter": "runs/sft-filter-ant",
    "RLPF (PD tracker reward)": "runs/rlpf-ant",
    "RLPF, each batch scored in turn": "runs/rlpf-ant-in-turn",
    "RLPF without alignment reward": "runs/rlpf-ant-no-alignment",
    "RLPF without KL": "runs/rlpf-ant-no-kl",
    "RLPF without alignment and KL": "runs/rlpf-ant-no-alignment-no-kl",
    "RLPF rewarded by the learned tracker": "runs/rlpf-ant-learned-reward",
}


def main(argv):
    runs = dict(a.split("=", 1) for a in argv) if argv else RUNS
    reports = {}
    for name, path in runs.items():
        try:
            with open(os.path.join(path, "report.json")) as f:
                reports[name] = json.load(f)
        except OSError:
            print(f"(skipping {name}: no {path}/report.json)", file=sys.stderr)
    if not reports:
        print("no finished runs", file=sys.stderr)
        return 1
    print(headline_table(reports, ["pd", "learned"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
