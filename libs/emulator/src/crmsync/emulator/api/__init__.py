"""The emulator's HTTP API, one module per Salesforce API area (and the control API)."""
