"""The web demo (gradio, imported lazily: ``pip install 'tgsr[demo]'``)."""

from tgsr.demo.app import build_demo, free_port, launch

__all__ = ["build_demo", "free_port", "launch"]
