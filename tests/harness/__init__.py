"""The test-support package: what every tier builds on (see docs/testing.md)."""
