"""Gradio demo over the pipeline's outputs: `python -m app --help`."""

import os

# Before gradio is imported anywhere: no usage analytics (the cpu profile runs offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
