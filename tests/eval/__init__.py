"""Tests of vsr_accel/eval/ (the room's modules, one file each where they have tests)."""
