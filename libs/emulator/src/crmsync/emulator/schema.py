"""The five objects the emulator knows, with the attributes their describe reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crmsync.emulator.ids import KEY_PREFIXES

# Salesforce field types and the SOAP types its describe pairs them with.
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "picklist": "xsd:string",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "int": "xsd:int",
    "currency": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
}
STRING_TYPES = frozenset({"id", "reference", "string", "textarea", "email", "phone", "url", "picklist"})
NUMBER_TYPES = frozenset({"double", "currency", "int"})


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    label: str = ""
    length: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    required: bool = False  # on create (REQUIRED_FIELD_MISSING); describe shows nillable False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    custom: bool = False
    calculated: bool = False
    compound_of: tuple[tuple[str, str], ...] = ()  # (part key, field name) of an address
    compound_field_name: str | None = None
    precision: int = 0
    scale: int = 0
    picklist: tuple[str, ...] = ()

    @property
    def is_system(self) -> bool:
        return not self.createable and not self.updateable


@dataclass
class ObjectDef:
    name: str
    label: str
    label_plural: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    lower: dict[str, str] = field(default_factory=dict)

    @property
    def key_prefix(self) -> str:
        return KEY_PREFIXES[self.name]

    def field(self, name: str) -> FieldDef | None:
        """Returns the field named so, case-insensitively (SOQL and REST accept any case)."""
        canonical = self.lower.get(name.lower())
        return self.fields[canonical] if canonical else None

    def relationship(self, name: str) -> FieldDef | None:
        """Returns the reference field whose relationship name this is (Owner → OwnerId)."""
        lowered = name.lower()
        for f in self.fields.values():
            if f.relationship_name and f.relationship_name.lower() == lowered:
                return f
        return None


def _label(name: str) -> str:
    base = name.removesuffix("__c").removesuffix("Id") if name not in ("Id",) else "Record ID"
    out = []
    for i, char in enumerate(base):
        if char.isupper() and i and not base[i - 1].isupper():
            out.append(" ")
        out.append(char)
    return "".join(out).replace("_", " ")


def _system(name: str, type_: str, **kw: Any) -> FieldDef:
    return FieldDef(name, type_, createable=False, updateable=False, nillable=False, **kw)


def _common_tail() -> list[FieldDef]:
    return [
        FieldDef("IsDeleted", "boolean", createable=False, updateable=False, nillable=False),
        _system("CreatedDate", "datetime"),
        _system("LastModifiedDate", "datetime"),
        _system("SystemModstamp", "datetime"),
    ]


def _owner() -> FieldDef:
    return FieldDef(
        "OwnerId", "reference", length=18, reference_to=("User",), relationship_name="Owner", nillable=False
    )


def _address(name: str, prefix: str) -> list[FieldDef]:
    parts = (
        ("street", "Street"),
        ("city", "City"),
        ("state", "State"),
        ("postalCode", "PostalCode"),
        ("country", "Country"),
    )
    lengths = {"Street": 255, "City": 40, "State": 80, "PostalCode": 20, "Country": 80}
    part_fields = [
        FieldDef(
            f"{prefix}{suffix}",
            "textarea" if suffix == "Street" else "string",
            length=lengths[suffix],
            compound_field_name=name,
        )
        for _, suffix in parts
    ]
    compound = FieldDef(
        name,
        "address",
        createable=False,
        updateable=False,
        compound_of=tuple((key, f"{prefix}{suffix}") for key, suffix in parts),
    )
    return [*part_fields, compound]


_LEAD_STATUS = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Finance",
    "Government",
    "Healthcare",
    "Insurance",
    "Manufacturing",
    "Media",
    "Retail",
    "Technology",
    "Transportation",
)
STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Closed Won",
    "Closed Lost",
)


def _name_fields() -> list[FieldDef]:
    return [
        FieldDef("FirstName", "string", length=40),
        FieldDef("LastName", "string", length=80, nillable=False, required=True),
        FieldDef("Name", "string", length=121, createable=False, updateable=False, nillable=False),
    ]


def _id() -> FieldDef:
    return FieldDef("Id", "id", length=18, createable=False, updateable=False, nillable=False)


def _lead() -> list[FieldDef]:
    return [
        _id(),
        *_name_fields(),
        FieldDef("Email", "email", length=80),
        FieldDef("Company", "string", length=255, nillable=False, required=True),
        FieldDef("Title", "string", length=128),
        FieldDef("Phone", "phone", length=40),
        FieldDef("MobilePhone", "phone", length=40),
        *_address("Address", ""),
        FieldDef("Website", "url", length=255),
        FieldDef("Industry", "picklist", length=255, picklist=INDUSTRIES),
        FieldDef("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        FieldDef("Status", "picklist", length=255, nillable=False, picklist=_LEAD_STATUS),
        FieldDef("HasOptedOutOfEmail", "boolean", nillable=False),
        FieldDef("Marketing_Score__c", "double", custom=True, precision=18, scale=2),
        _owner(),
        FieldDef("IsConverted", "boolean", createable=True, updateable=False, nillable=False),
        _system(
            "ConvertedContactId",
            "reference",
            length=18,
            reference_to=("Contact",),
            relationship_name="ConvertedContact",
        ),
        _system(
            "ConvertedAccountId",
            "reference",
            length=18,
            reference_to=("Account",),
            relationship_name="ConvertedAccount",
        ),
        _system("ConvertedDate", "date"),
        *_common_tail(),
    ]


def _contact() -> list[FieldDef]:
    return [
        _id(),
        *_name_fields(),
        FieldDef("Email", "email", length=80),
        FieldDef("Title", "string", length=128),
        FieldDef("Phone", "phone", length=40),
        FieldDef("MobilePhone", "phone", length=40),
        *_address("MailingAddress", "Mailing"),
        FieldDef("AccountId", "reference", length=18, reference_to=("Account",), relationship_name="Account"),
        _owner(),
        FieldDef("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        FieldDef("HasOptedOutOfEmail", "boolean", nillable=False),
        FieldDef("Marketing_Score__c", "double", custom=True, precision=18, scale=2),
        *_common_tail(),
    ]


def _account() -> list[FieldDef]:
    return [
        _id(),
        FieldDef("Name", "string", length=255, nillable=False, required=True),
        FieldDef("Industry", "picklist", length=255, picklist=INDUSTRIES),
        FieldDef("Website", "url", length=255),
        FieldDef("Phone", "phone", length=40),
        *_address("BillingAddress", "Billing"),
        FieldDef("NumberOfEmployees", "int", precision=8),
        _owner(),
        *_common_tail(),
    ]


def _user() -> list[FieldDef]:
    return [
        _id(),
        FieldDef("FirstName", "string", length=40),
        FieldDef("LastName", "string", length=80, nillable=False, required=True),
        FieldDef("Name", "string", length=121, createable=False, updateable=False, nillable=False),
        FieldDef("Email", "email", length=128, nillable=False, required=True),
        FieldDef("Username", "string", length=80, nillable=False),
        FieldDef("IsActive", "boolean", nillable=False),
        *[f for f in _common_tail() if f.name != "IsDeleted"],
    ]


def _opportunity() -> list[FieldDef]:
    return [
        _id(),
        FieldDef("Name", "string", length=120, nillable=False, required=True),
        FieldDef("StageName", "picklist", length=255, nillable=False, required=True, picklist=STAGES),
        FieldDef("Amount", "currency", precision=18, scale=2),
        FieldDef("CloseDate", "date", nillable=False, required=True),
        FieldDef("AccountId", "reference", length=18, reference_to=("Account",), relationship_name="Account"),
        FieldDef("ContactId", "reference", length=18, reference_to=("Contact",), relationship_name="Contact"),
        _owner(),
        *_common_tail(),
    ]


def _build() -> dict[str, ObjectDef]:
    labels = {
        "Lead": ("Lead", "Leads", _lead()),
        "Contact": ("Contact", "Contacts", _contact()),
        "Account": ("Account", "Accounts", _account()),
        "User": ("User", "Users", _user()),
        "Opportunity": ("Opportunity", "Opportunities", _opportunity()),
    }
    objects = {}
    for name, (label, plural, fields) in labels.items():
        obj = ObjectDef(name, label, plural)
        for f in fields:
            obj.fields[f.name] = f
            obj.lower[f.name.lower()] = f.name
        objects[name] = obj
    return objects


OBJECTS: dict[str, ObjectDef] = _build()


@dataclass(frozen=True)
class ChildRelationship:
    """A parent's name for the records that reference it (Account.Contacts: Contact.AccountId)."""

    name: str
    child: str
    field: str


CHILD_RELATIONSHIPS: dict[str, tuple[ChildRelationship, ...]] = {
    "Account": (
        ChildRelationship("Contacts", "Contact", "AccountId"),
        ChildRelationship("Opportunities", "Opportunity", "AccountId"),
    ),
}


def child_relationship(parent: str, name: str) -> ChildRelationship | None:
    """Returns the child relationship of that name (any case) on a parent object."""
    for relationship in CHILD_RELATIONSHIPS.get(parent, ()):
        if relationship.name.lower() == name.lower():
            return relationship
    return None


OBJECTS_LOWER = {name.lower(): name for name in OBJECTS}


def find_object(name: str) -> ObjectDef | None:
    """Returns the object named so, case-insensitively."""
    canonical = OBJECTS_LOWER.get(name.lower())
    return OBJECTS[canonical] if canonical else None


def describe_field(f: FieldDef) -> dict[str, Any]:
    """Returns one field as it appears in an sObject describe."""
    return {
        "aggregatable": f.type not in ("textarea", "address"),
        "autoNumber": False,
        "byteLength": f.length * 3,
        "calculated": f.calculated,
        "caseSensitive": False,
        "compoundFieldName": f.compound_field_name,
        "createable": f.createable,
        "custom": f.custom,
        "defaultValue": False if f.type == "boolean" and f.createable else None,
        "defaultedOnCreate": f.type == "boolean" or f.is_system or f.name in ("OwnerId", "Id"),
        "digits": 0,
        "externalId": False,
        "filterable": f.type != "address",
        "groupable": f.type not in ("double", "currency", "textarea", "address", "datetime"),
        "idLookup": f.name in ("Id", "Email"),
        "label": f.label or _label(f.name),
        "length": f.length,
        "name": f.name,
        "nameField": f.name == "Name",
        "nillable": f.nillable and not f.required,
        "permissionable": f.nillable and not f.is_system,
        "picklistValues": [
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
            for v in f.picklist
        ],
        "precision": f.precision,
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name,
        "restrictedPicklist": False,
        "scale": f.scale,
        "soapType": _SOAP_TYPES.get(f.type, "xsd:string"),
        "sortable": f.type not in ("textarea", "address"),
        "type": f.type,
        "unique": False,
        "updateable": f.updateable,
    }


def _urls(version: str, name: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{name}"
    return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}


def describe_global_entry(obj: ObjectDef, version: str) -> dict[str, Any]:
    """Returns one object's entry in the global describe."""
    return {
        "activateable": False,
        "createable": True,
        "custom": False,
        "customSetting": False,
        "deletable": obj.name != "User",
        "deprecatedAndHidden": False,
        "feedEnabled": True,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": True,
        "mergeable": obj.name in ("Lead", "Contact", "Account"),
        "mruEnabled": True,
        "name": obj.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": obj.name != "User",
        "updateable": True,
        "urls": _urls(version, obj.name),
    }


def describe_object(obj: ObjectDef, version: str) -> dict[str, Any]:
    """Returns an sObject describe."""
    return {
        **describe_global_entry(obj, version),
        "childRelationships": [
            {
                "cascadeDelete": False,
                "childSObject": r.child,
                "deprecatedAndHidden": False,
                "field": r.field,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": r.name,
                "restrictedDelete": False,
            }
            for r in CHILD_RELATIONSHIPS.get(obj.name, ())
        ],
        "fields": [describe_field(f) for f in obj.fields.values()],
        "recordTypeInfos": [],
        "supportedScopes": [{"label": "All " + obj.label_plural, "name": "everything"}],
    }
