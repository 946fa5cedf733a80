"""`make demo`: the balancer against a simulated cluster, on one machine, no Docker needed."""
