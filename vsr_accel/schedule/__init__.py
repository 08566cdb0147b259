"""The run's schedule as data: the curriculum (`Schedule`), the stateless batch sampler, the LR of
every iteration (`lr/`) and the printed plan. Pure functions of the iteration, so a resume needs no
replay; imports only the shared ground (`vsr_accel.core`)."""
