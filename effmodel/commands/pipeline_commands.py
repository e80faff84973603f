"""``effmodel train`` and ``effmodel run``."""
