"""sim_kernels."""
