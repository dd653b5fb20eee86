"""vpt-lens: an interpretability harness for VPT and STEVE-1 Minecraft agents."""

__version__ = "0.1.0"
