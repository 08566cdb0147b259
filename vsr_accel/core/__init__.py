"""The shared ground: what every room may use (user errors, atomic writes, checkpoints, process
groups, RNG capture, the options schema and its YAML reader). Imports nothing from the other rooms."""
