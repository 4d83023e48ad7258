"""From samples to training batches: which samples a host reads (sharding), where they come from
(a list in memory or a Pipe-mode FIFO), and the worker processes that decode and transform them."""
