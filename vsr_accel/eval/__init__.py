"""Scoring: BasicSR's PSNR/SSIM (`metrics`), test-set protocols (`protocols`), clip scoring and the
published tables (`evaluation`), and the propagation/flow probes (`probes`). Imports only the shared
ground: scoring never pulls in inference's model loading."""
