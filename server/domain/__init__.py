"""Domain layer: instruments, market inputs, models and errors. No gRPC, no kernels."""
