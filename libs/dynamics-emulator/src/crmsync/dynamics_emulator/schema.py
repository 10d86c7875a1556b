"""The tables the emulator serves, as Dataverse describes them: a pure data table.

Each attribute is (logical name, AttributeType, MaxLength, IsValidForCreate,
IsValidForUpdate); lookups name their targets, picklists their options. A
lookup `x` is read as `_x_value` and written through a navigation property
(`x@odata.bind`), as in Dataverse.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

EDM = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "Integer": "Edm.Int32",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Money": "Edm.Decimal",
    "Decimal": "Edm.Decimal",
    "Double": "Edm.Double",
    "Boolean": "Edm.Boolean",
    "DateTime": "Edm.DateTimeOffset",
    "Uniqueidentifier": "Edm.Guid",
    "Lookup": "Edm.Guid",
    "Owner": "Edm.Guid",
    "Customer": "Edm.Guid",
    "MultiSelectPicklist": "Edm.String",  # the chosen options' values, comma-separated: "1,3"
}
LOOKUP_TYPES = frozenset({"Lookup", "Owner", "Customer"})
OPTION_TYPES = frozenset({"Picklist", "State", "Status", "MultiSelectPicklist"})
MULTI_SELECT = "MultiSelectPicklist"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    max_length: int | None = None
    create: bool = True
    update: bool = True
    targets: tuple[str, ...] = ()
    options: tuple[tuple[int, str], ...] = ()
    custom: bool = False  # added by a solution (IsCustomAttribute), not one of Dataverse's own
    schema_name: str | None = None

    @property
    def edm(self) -> str:
        return EDM[self.type]

    @property
    def field(self) -> str:
        """The key a record holds the value under (`_x_value` for a lookup)."""
        return f"_{self.name}_value" if self.type in LOOKUP_TYPES else self.name

    @property
    def is_lookup(self) -> bool:
        return self.type in LOOKUP_TYPES


@dataclass(frozen=True)
class Navigation:
    name: str
    attribute: str  # the lookup holding the reference
    target: str  # the logical name of the table it points to


@dataclass(frozen=True)
class Table:
    logical: str
    entity_set: str
    primary_id: str
    primary_name: str
    object_type_code: int
    display: str
    attributes: tuple[Attribute, ...]
    navigations: tuple[Navigation, ...] = ()
    by_name: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({a.name: a for a in self.attributes})
        self.by_name.update({a.field: a for a in self.attributes if a.is_lookup})

    @property
    def metadata_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse-emulator/entity/{self.logical}"))

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical}"

    def navigation(self, name: str) -> Navigation | None:
        return next((n for n in self.navigations if n.name == name), None)


def _s(name: str, length: int, **kw: object) -> Attribute:
    return Attribute(name, "String", length, **kw)  # type: ignore[arg-type]


def _ro(name: str, kind: str) -> Attribute:
    return Attribute(name, kind, None, create=False, update=False)


def _common(primary: str) -> tuple[Attribute, ...]:
    return (
        Attribute(primary, "Uniqueidentifier", None, create=True, update=False),
        _ro("createdon", "DateTime"),
        _ro("modifiedon", "DateTime"),
        _ro("versionnumber", "BigInt"),
        Attribute("ownerid", "Owner", targets=("systemuser",)),
        Attribute("owninguser", "Lookup", create=False, update=False, targets=("systemuser",)),
    )


ADDRESS = (
    _s("address1_line1", 250),
    _s("address1_city", 80),
    _s("address1_stateorprovince", 50),
    _s("address1_postalcode", 20),
    _s("address1_country", 80),
)
OPT_OUTS = (
    Attribute("donotemail", "Boolean"),
    Attribute("donotbulkemail", "Boolean"),
    Attribute("donotphone", "Boolean"),
)
INTERESTS = ((100000000, "Analytics"), (100000001, "Automation"), (100000002, "Email Marketing"),
             (100000003, "Events"), (100000004, "Mobile"), (100000005, "Social"))  # fmt: skip
# The columns the crmsync solution adds to leads and contacts (publisher prefix `crmsync_`): the
# primary score crmsync pushes, and a multi-select choice of interests.
SOLUTION = (
    Attribute("crmsync_marketingscore", "Integer", custom=True, schema_name="crmsync_MarketingScore"),
    Attribute(
        "crmsync_interests", MULTI_SELECT, options=INTERESTS, custom=True, schema_name="crmsync_Interests"
    ),
)
LEAD_SOURCES = ((1, "Advertisement"), (2, "Employee Referral"), (3, "External Referral"), (4, "Partner"),
                (5, "Public Relations"), (6, "Seminar"), (7, "Trade Show"), (8, "Web"), (9, "Word of Mouth"),
                (10, "Other"))  # fmt: skip
INDUSTRIES = ((1, "Accounting"), (2, "Agriculture and Non-petrol Natural Resource Extraction"),
              (3, "Broadcasting Printing and Publishing"), (4, "Brokers"), (6, "Business Services"),
              (7, "Consulting"), (8, "Consumer Services"), (10, "Financial"), (12, "Inbound Capital Intensive Processing"),
              (19, "Retail"), (23, "Transportation"))  # fmt: skip
OWNER_NAVS = (
    Navigation("owninguser", "owninguser", "systemuser"),
    Navigation("ownerid", "ownerid", "systemuser"),
)

LEAD = Table(
    "lead", "leads", "leadid", "fullname", 4, "Lead",
    (
        *_common("leadid"),
        _s("subject", 300), _s("firstname", 50), _s("lastname", 50), _ro("fullname", "String"),
        _s("emailaddress1", 100), _s("telephone1", 50), _s("mobilephone", 50), _s("jobtitle", 100),
        _s("companyname", 100), _s("websiteurl", 200), *ADDRESS, *OPT_OUTS,
        Attribute("description", "Memo", 2000),
        Attribute("leadsourcecode", "Picklist", options=LEAD_SOURCES),
        Attribute("industrycode", "Picklist", options=INDUSTRIES),
        Attribute("numberofemployees", "Integer"), Attribute("revenue", "Money"),
        Attribute("statecode", "State", options=((0, "Open"), (1, "Qualified"), (2, "Disqualified"))),
        Attribute("statuscode", "Status", options=((1, "New"), (2, "Contacted"), (3, "Qualified"), (4, "Lost"),
                                                   (5, "Cannot Contact"), (6, "No Longer Interested"), (7, "Canceled"))),
        Attribute("parentcontactid", "Lookup", targets=("contact",)),
        Attribute("parentaccountid", "Lookup", targets=("account",)), *SOLUTION,
    ),
    (Navigation("parentcontactid", "parentcontactid", "contact"),
     Navigation("parentaccountid", "parentaccountid", "account"), *OWNER_NAVS),
)  # fmt: skip

CONTACT = Table(
    "contact", "contacts", "contactid", "fullname", 2, "Contact",
    (
        *_common("contactid"),
        _s("firstname", 50), _s("lastname", 50), _ro("fullname", "String"), _s("emailaddress1", 100),
        _s("telephone1", 50), _s("mobilephone", 50), _s("jobtitle", 100), *ADDRESS, *OPT_OUTS,
        Attribute("description", "Memo", 2000), Attribute("birthdate", "DateTime"),
        Attribute("statecode", "State", options=((0, "Active"), (1, "Inactive"))),
        Attribute("statuscode", "Status", options=((1, "Active"), (2, "Inactive"))),
        Attribute("parentcustomerid", "Customer", targets=("account", "contact")),
        Attribute("originatingleadid", "Lookup", targets=("lead",)), *SOLUTION,
    ),
    (Navigation("parentcustomerid_account", "parentcustomerid", "account"),
     Navigation("parentcustomerid_contact", "parentcustomerid", "contact"),
     Navigation("originatingleadid", "originatingleadid", "lead"), *OWNER_NAVS),
)  # fmt: skip

ACCOUNT = Table(
    "account", "accounts", "accountid", "name", 1, "Account",
    (
        *_common("accountid"),
        _s("name", 160), _s("telephone1", 50), _s("websiteurl", 200), _s("emailaddress1", 100), *ADDRESS,
        Attribute("industrycode", "Picklist", options=INDUSTRIES),
        Attribute("numberofemployees", "Integer"), Attribute("revenue", "Money"),
        Attribute("description", "Memo", 2000),
        Attribute("statecode", "State", options=((0, "Active"), (1, "Inactive"))),
        Attribute("statuscode", "Status", options=((1, "Active"), (2, "Inactive"))),
        Attribute("primarycontactid", "Lookup", targets=("contact",)),
    ),
    (Navigation("primarycontactid", "primarycontactid", "contact"), *OWNER_NAVS),
)  # fmt: skip

SYSTEMUSER = Table(
    "systemuser", "systemusers", "systemuserid", "fullname", 8, "User",
    (
        Attribute("systemuserid", "Uniqueidentifier", None, create=True, update=False),
        _ro("createdon", "DateTime"), _ro("modifiedon", "DateTime"), _ro("versionnumber", "BigInt"),
        _s("firstname", 64), _s("lastname", 64), _ro("fullname", "String"),
        _s("internalemailaddress", 100), _s("domainname", 1024), _s("title", 128),
        Attribute("isdisabled", "Boolean", update=False),
    ),
)  # fmt: skip

OPPORTUNITY = Table(
    "opportunity", "opportunities", "opportunityid", "name", 3, "Opportunity",
    (
        *_common("opportunityid"),
        _s("name", 300), Attribute("estimatedvalue", "Money"), Attribute("estimatedclosedate", "DateTime"),
        Attribute("closeprobability", "Integer"), Attribute("description", "Memo", 2000),
        Attribute("statecode", "State", options=((0, "Open"), (1, "Won"), (2, "Lost"))),
        Attribute("statuscode", "Status", options=((1, "In Progress"), (2, "On Hold"), (3, "Won"), (4, "Canceled"),
                                                   (5, "Out-Sold"))),
        Attribute("parentaccountid", "Lookup", targets=("account",)),
        Attribute("parentcontactid", "Lookup", targets=("contact",)),
        Attribute("originatingleadid", "Lookup", targets=("lead",)),
    ),
    (Navigation("parentaccountid", "parentaccountid", "account"),
     Navigation("parentcontactid", "parentcontactid", "contact"),
     Navigation("originatingleadid", "originatingleadid", "lead"), *OWNER_NAVS),
)  # fmt: skip

TABLES: dict[str, Table] = {t.logical: t for t in (LEAD, CONTACT, ACCOUNT, SYSTEMUSER, OPPORTUNITY)}
BY_SET: dict[str, Table] = {t.entity_set: t for t in TABLES.values()}


def table_named(name: str) -> Table | None:
    """The table of a logical name or an entity set name."""
    return TABLES.get(name) or BY_SET.get(name)
