"""The task layer: what the Invoke tasks in tasks.py call. Each function returns an exit code."""
