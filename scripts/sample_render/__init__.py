"""The sample-brochure renderer behind scripts/render_sample.py (markdown pages -> PDF + ground truth)."""
