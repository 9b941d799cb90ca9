"""scaler: puts idle GPU workloads on Kubernetes to sleep and wakes them again."""

__version__ = "0.1.0"
