"""jetwork: sdk."""
