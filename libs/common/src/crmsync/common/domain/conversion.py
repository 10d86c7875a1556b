"""Lead conversion in the contact store (pure, R17): one contact, its local-only values and history kept.

A converted Lead's contact becomes its Contact's. Values that came from the
CRM are the Lead's and give way to the Contact's; values set locally (forms,
programs, user edits), with their origin and time, survive the conversion.
"""

from __future__ import annotations

from crmsync.common.domain.contacts import ContactValues, FieldMeta


def local_only(values: ContactValues) -> ContactValues:
    """Returns the values that did not come from the CRM, with their origin and time."""
    keep = {name for name, meta in values.meta.items() if not meta.from_crm}
    return ContactValues(
        {k: v for k, v in values.fields.items() if k in keep}, {k: values.meta[k] for k in keep}
    )


def merge_converted_lead(contact: ContactValues, lead: ContactValues) -> ContactValues:
    """Returns the Contact's values once it took the converted Lead's local values that are newer."""
    fields = dict(contact.fields)
    meta = dict(contact.meta)
    for name, value in lead.fields.items():
        lead_meta = lead.meta.get(name)
        if lead_meta is None or lead_meta.from_crm:
            continue
        mine = meta.get(name)
        if mine is None or mine.at < lead_meta.at:
            fields[name] = value
            meta[name] = FieldMeta(lead_meta.origin, lead_meta.at)
    return ContactValues(fields, meta)
