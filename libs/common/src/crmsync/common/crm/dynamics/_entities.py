"""The Dataverse tables behind crmsync's CRM roles, and the role fields each one surfaces.

The services ask for objects by role (`Lead`, `Contact`, `Account`, `User`,
`Opportunity`) and read the fields `DYNAMICS_ROLES` names (`Id`, `modifiedon`,
`OwnerId`, `Owner.Name`, `Qualified`, …). Each table here says where a role
field lives in Dataverse; records come back with both the Dataverse attributes
asked for and the role fields filled in. A pure data table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from crmsync.common.crm.interface import CrmRejected

# Role fields computed from more than one attribute.
QUALIFIED = "Qualified"  # a lead qualified (statecode 1)
QUALIFIED_CONTACT_ID = "QualifiedContactId"  # the contact a qualified lead became (parentcontactid)
MODIFIED_ON = "modifiedon"
OPTED_OUT = "OptedOut"  # donotemail or donotbulkemail (R23)
OPT_OUT_ATTRIBUTES = ("donotemail", "donotbulkemail")
LEAD_QUALIFIED = 1  # lead statecode: 0 open, 1 qualified, 2 disqualified


@dataclass(frozen=True)
class Related:
    """A parent record reached through a lookup, surfaced as a nested dict (`{"Owner": {"Name": …}}`)."""

    name: str  # the role relationship: Owner, Account
    lookup: str  # the attribute holding the parent's id (`_ownerid_value`)
    target: str  # the parent table's role name
    id_field: str  # the role field carrying the parent's id when it is of that table (OwnerId)
    fields: Mapping[str, str]  # role field of the parent -> its Dataverse attribute
    bind: str  # how a write sets it: `navigation@odata.bind` to `/entityset(id)`
    target_set: str


@dataclass(frozen=True)
class Entity:
    role: str
    logical: str
    entity_set: str
    primary_id: str
    label: str
    # role field -> the Dataverse attribute holding it (read as is)
    aliases: Mapping[str, str] = field(default_factory=dict)
    related: tuple[Related, ...] = ()

    def related_named(self, name: str) -> Related | None:
        return next((r for r in self.related if r.name.lower() == name.lower()), None)

    def attribute_of(self, name: str) -> str:
        """Returns the Dataverse attribute a role field (or an attribute itself) is read from."""
        for alias, attribute in self.aliases.items():
            if alias.lower() == name.lower():
                return attribute
        return name


_OWNER = Related(
    name="Owner",
    lookup="_ownerid_value",
    target="User",
    id_field="OwnerId",
    fields={"Id": "systemuserid", "Name": "fullname", "Email": "internalemailaddress"},
    bind="ownerid",
    target_set="systemusers",
)
_ACCOUNT = Related(
    name="Account",
    lookup="_parentcustomerid_value",
    target="Account",
    id_field="AccountId",
    fields={"Id": "accountid", "Name": "name"},
    bind="parentcustomerid_account",
    target_set="accounts",
)
_EMAIL = {"Email": "emailaddress1"}


def _entity(
    role: str,
    logical: str,
    entity_set: str,
    *,
    aliases: dict[str, str],
    related: tuple[Related, ...] = (_OWNER,),
) -> Entity:
    primary = f"{logical}id"
    names = {"Id": primary, "CreatedDate": "createdon", **aliases}
    return Entity(role, logical, entity_set, primary, label=role, aliases=names, related=related)


ENTITIES: tuple[Entity, ...] = (
    _entity("Lead", "lead", "leads", aliases={**_EMAIL, "Company": "companyname"}),
    _entity("Contact", "contact", "contacts", aliases=_EMAIL, related=(_OWNER, _ACCOUNT)),
    _entity("Account", "account", "accounts", aliases={**_EMAIL, "Name": "name"}),
    _entity(
        "User",
        "systemuser",
        "systemusers",
        aliases={"Name": "fullname", "Email": "internalemailaddress"},
        related=(),
    ),
    _entity(
        "Opportunity",
        "opportunity",
        "opportunities",
        aliases={
            "Name": "name",
            "StageName": "statuscode",
            "Amount": "estimatedvalue",
            "CloseDate": "estimatedclosedate",
            "AccountId": "_parentaccountid_value",
            "ContactId": "_parentcontactid_value",
        },
    ),
)

_BY_NAME: dict[str, Entity] = {}
for _e in ENTITIES:
    for _name in (_e.role, _e.logical, _e.entity_set):
        _BY_NAME[_name.lower()] = _e
_BY_NAME["systemusers"] = _BY_NAME["user"]


def entity_named(name: str) -> Entity:
    """Returns the table of a role (`Lead`), logical (`lead`) or entity set (`leads`) name."""
    found = _BY_NAME.get(name.lower())
    if found is None:
        known = ", ".join(e.role for e in ENTITIES)
        raise CrmRejected(f"no Dataverse table for {name!r} (known: {known})", error_code="UNKNOWN_TABLE")
    return found
