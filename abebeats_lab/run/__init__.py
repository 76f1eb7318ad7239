"""Running comparisons: the public functions, planning under per-route limits and costs,
one job's life (the never-pay-twice submit, waiting, download, record) and timing."""
