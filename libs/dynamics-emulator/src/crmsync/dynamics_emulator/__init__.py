"""A Microsoft Dataverse Web API (Dynamics 365, OData v4) emulator with generated data."""
