"""Connection, user and user-activity logs; metrics."""
