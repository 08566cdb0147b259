"""The paper's ablation tables as data, and a runner that reproduces them from real runs.

`experiments/ablations/<table>.yml` defines each table (variants as option overrides of a scale's
baseline; the scales' numbers in `experiments/ablations/scales/`, shared by every table);
`python -m experiments.run all --scale cpu|paper` trains every variant (each seed of the rows
that list several), evaluates it on the held-out set and writes each table (`experiments.tables`),
its figures (`experiments.plots`) and every run's logs and record (`experiments.records`) to
`experiments/results/<scale>/<table>/`, and the one-page summary per claim of the paper
(`experiments.summary`) to `experiments/results/<scale>/README.md`. Training runs themselves live
in `experiments/runs/` (ignored by git), the way BasicSR keeps run folders under `experiments/`.
"""
