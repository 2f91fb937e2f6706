"""Personal fields encrypted at rest (docs/security.md §8): the key file (`keys`) and the database sessions
that hold its keys, with the rotation that re-encrypts every sealed row (`sealing`)."""
