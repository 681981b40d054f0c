"""jetwork: actors."""
