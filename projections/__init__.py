"""jetwork: projections."""
