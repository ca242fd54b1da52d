"""Running a VOLTTRON 2.x platform: instance setup, vctl, bus clients (used by the CLI and tests)."""
