"""jetwork: events."""
