"""vsr-accel's reusable core: curriculum, sampler, LR schedules, distributed helpers,
checkpoints and metrics. Depends on torch only; knows nothing about models or datasets."""
