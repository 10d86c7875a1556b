"""A Salesforce REST API emulator and dataset generator."""
