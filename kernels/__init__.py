"""CUDA C++ sources for the cupy backend, shipped as package data."""
