"""Tests of vsr_accel/core/ (the room's modules, one file each where they have tests)."""
