"""Fleet and outage scenarios: link proxy, process supervisor, workloads, checker and reports."""
