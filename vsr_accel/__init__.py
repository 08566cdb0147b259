"""vsr-accel's reusable core, torch-only and blind to `models` and `datasets`, in rooms by job:
`core` (the shared ground), `schedule` (curriculum, sampler, LR, plan), `train` (the trainer's
components), `infer` (chunked inference) and `eval` (scores, protocols, probes). docs/DESIGN.md
names every module and the arrows between the rooms."""
