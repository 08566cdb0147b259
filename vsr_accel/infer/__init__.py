"""Inference: chunk and window planning (`chunking`), the frame restore that validation shares
(`restore`) and the long-video engine (`inference`)."""
