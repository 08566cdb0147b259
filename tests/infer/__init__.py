"""Tests of vsr_accel/infer/ (the room's modules, one file each where they have tests)."""
