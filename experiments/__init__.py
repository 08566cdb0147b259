"""The paper's ablation tables as data, and a runner that reproduces them from real runs.

`experiments/ablations/<table>.yml` defines each table (base options per scale, variants as option
overrides); `python -m experiments.run <table> --scale cpu|paper` trains every variant, evaluates it
on the held-out set and writes the table (`experiments.tables`) and its figures (`experiments.plots`)
to `experiments/results/<scale>/<table>/`. Training runs themselves live in `experiments/runs/`
(ignored by git), the way BasicSR keeps run folders under `experiments/`.
"""
