"""Tests of vsr_accel/schedule/ (the room's modules, one file each where they have tests)."""
