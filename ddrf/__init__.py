"""DDRF Edge: diffusion-based PAN/MS and hyperspectral fusion, from PyTorch training to a torch-free runtime."""

__version__ = "0.1.0"
