"""Tests of vsr_accel/train/ (the room's modules, one file each where they have tests)."""
