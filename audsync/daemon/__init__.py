"""`audsync daemon`: schedules (schedules), the scheduler that runs each audience on its own
(scheduler) and its Prometheus endpoint (metrics)."""
