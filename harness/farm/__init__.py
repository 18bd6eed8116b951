"""The device farm: the inventory (which devices exist), connecting to them, checking what they
offer, and scheduling a sweep's jobs over them (devices side by side, one job at a time each)."""
