"""Orgs and their records: columnar tables, SOQL evaluation, validated writes, lead conversion."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

from crmsync.emulator import coerce, ids, queries, render, soql
from crmsync.emulator.clock import day, format_datetime, now_ms, parse_datetime
from crmsync.emulator.dataset import generate
from crmsync.emulator.errors import ApiError, RecordError, RecordRejected
from crmsync.emulator.schema import OBJECTS, FieldDef, find_object
from crmsync.emulator.table import DELETED_REACH_MS, Cursor, Fetch, Table

__all__ = [
    "DELETED_REACH_MS",
    "ApiError",
    "Cursor",
    "Fetch",
    "Org",
    "RecordError",
    "RecordRejected",
    "Table",
    "format_datetime",
    "now_ms",
    "parse_datetime",
]


class Org:
    """One Salesforce org: its records, credentials, API budget, faults and what clients wrote."""

    def __init__(
        self,
        *,
        org_id: str,
        number: int,
        leads: int,
        contacts: int,
        seed: int,
        client_id: str,
        client_secret: str,
        api_limit: int,
        now: int | None = None,
    ) -> None:
        self.org_id = org_id
        self.number = number
        self.tag = ids.org_tag(number)
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = f"5Aep{secrets.token_urlsafe(48)}"
        self.jwt_public_key: str | None = None
        self.api_limit = api_limit
        self.api_used = 0
        self.writes: list[dict[str, Any]] = []
        self.cursors: dict[str, Cursor] = {}
        self.bulk_jobs: dict[str, dict[str, Any]] = {}
        self.bulk1_jobs: dict[str, Any] = {}  # Bulk API 1.0 jobs (crmsync.emulator.api.bulk1)
        self.bulk_query_jobs = 0  # Bulk 2.0 query jobs created (DailyBulkV2QueryJobs)
        self.bulk_batches = 0  # Bulk API batches created (DailyBulkApiBatches)
        self._serials: dict[str, int] = {}
        columns = generate(leads=leads, contacts=contacts, seed=seed, now_ms=now or now_ms())
        self.tables = {
            name: Table(obj, self.tag, columns[name], columns[name]["SystemModstamp"].n)
            for name, obj in OBJECTS.items()
        }
        self.user_id = self.tables["User"].id_of(0)  # the integration user the API acts as

    # -- lookups -------------------------------------------------------------------------
    def table(self, name: str) -> Table:
        obj = find_object(name)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return self.tables[obj.name]

    def find(self, name: str, record_id: str, *, deleted_ok: bool = False) -> tuple[Table, int]:
        """Returns (table, row) of a record, or raises Salesforce's 404."""
        table = self.table(name)
        if ids.normalize(record_id) is None:
            raise ApiError(
                404,
                "NOT_FOUND",
                "Provided external ID field does not exist or is not accessible: " + record_id,
            )
        row = table.row_of(record_id)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if not deleted_ok and not table.alive(row):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return table, row

    # -- rendering -----------------------------------------------------------------------
    def fetcher(self, table: Table, f: FieldDef, *, csv: bool = False) -> Fetch:
        """Returns a function rows → the field's JSON (or CSV) values for those rows."""
        return render.fetcher(self.tables, table, f, csv=csv)

    def page_renderer(
        self, table: Table, refs: Iterable[soql.FieldRef], version: str, *, csv: bool = False
    ) -> tuple[Callable[[list[int]], list[dict[str, Any]]], list[tuple[str, Fetch]]]:
        """Returns (rows → records in the REST shape, [(CSV column, rows → values)]) for selected fields."""
        return render.page_renderer(self.tables, table, refs, version, csv=csv)

    def full_record(
        self, table: Table, row: int, version: str, fields: Iterable[str] | None = None
    ) -> dict[str, Any]:
        return render.full_record(self.tables, table, row, version, fields)

    def next_id(self, prefix: str) -> str:
        """Returns a new id of an entity that is no record (jobs 750, batches 751, results 752)."""
        number = self._serials.get(prefix, 0) + 1
        self._serials[prefix] = number
        return ids.make_id(prefix, self.tag, number)

    # -- SOQL ----------------------------------------------------------------------------
    def run_query(
        self, text: str, *, include_deleted: bool, version: str, csv: bool = False
    ) -> tuple[Cursor, int | None]:
        """Returns the cursor of a query and, for COUNT(), the count."""
        return queries.run_query(self.tables, text, include_deleted=include_deleted, version=version, csv=csv)

    def save_cursor(self, cursor: Cursor) -> str:
        """Returns the locator of a cursor kept for nextRecordsUrl (the oldest go first, as in Salesforce)."""
        while len(self.cursors) >= 10:  # Salesforce keeps 10 open query cursors per user
            self.cursors.pop(next(iter(self.cursors)))
        locator = ids.make_id("01g", self.tag, secrets.randbelow(62**8))
        self.cursors[locator] = cursor
        return locator

    # -- writes --------------------------------------------------------------------------
    def prepare(
        self, table: Table, fields: dict[str, Any], *, creating: bool, system: bool
    ) -> dict[str, Any]:
        """Returns validated stored values, or raises RecordRejected with every problem found."""
        return coerce.prepare(self.tables, table, fields, creating=creating, system=system)

    def _stamp(self, table: Table, row: int, stamp: int | None, *, creating: bool) -> None:
        moment = stamp if stamp is not None else now_ms()
        if creating:
            table.cols["CreatedDate"][row] = moment
        table.cols["LastModifiedDate"][row] = moment
        table.cols["SystemModstamp"][row] = moment

    def create(
        self, obj: str, fields: dict[str, Any], *, system: bool = False, stamp: int | None = None
    ) -> tuple[Table, int]:
        """Returns (table, row) of a new record; raises RecordRejected or ApiError."""
        table = self.table(obj)
        values = self.prepare(table, fields, creating=True, system=system)
        row = table.n
        table.n += 1
        defaults = {"OwnerId": 0, "HasOptedOutOfEmail": False, "IsConverted": False, "IsActive": True}
        if table.obj.name == "Lead":
            defaults["Status"] = "Open - Not Contacted"
        for name, value in {**defaults, **values}.items():
            if name in table.cols:
                table.cols[name][row] = value
        self._stamp(table, row, stamp, creating=True)
        return table, row

    def update(
        self,
        obj: str,
        record_id: str,
        fields: dict[str, Any],
        *,
        system: bool = False,
        stamp: int | None = None,
    ) -> tuple[Table, int]:
        table, row = self.find(obj, record_id)
        if table.obj.name == "Lead" and table.raw(row, "IsConverted") and not system:
            raise RecordRejected(
                RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ())
            )
        values = self.prepare(table, fields, creating=False, system=system)
        for name, value in values.items():
            table.cols[name][row] = value
        self._stamp(table, row, stamp, creating=False)
        return table, row

    def delete(self, obj: str, record_id: str, *, stamp: int | None = None) -> tuple[Table, int]:
        table, row = self.find(obj, record_id)
        moment = stamp if stamp is not None else now_ms()
        table.deleted_at[row] = moment
        table.cols["SystemModstamp"][row] = moment
        return table, row

    def undelete(self, obj: str, record_id: str) -> tuple[Table, int]:
        table, row = self.find(obj, record_id, deleted_ok=True)
        if table.alive(row):
            raise RecordRejected(RecordError("UNDELETE_FAILED", "Entity is not in the recycle bin", ()))
        del table.deleted_at[row]
        self._stamp(table, row, None, creating=False)
        return table, row

    def convert_lead(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        stamp: int | None = None,
    ) -> tuple[str, str]:
        """Returns (contact id, account id) after converting a lead as a sales user would.

        With `contact_id` the lead is merged into that existing Contact (and its
        Account), whose fields stay as they are; without, a new Contact is made
        from the lead, under `account_id` or a new Account named after its Company.
        """
        leads, row = self.find("Lead", lead_id)
        if leads.raw(row, "IsConverted"):
            raise RecordRejected(
                RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "This lead was already converted.", ())
            )
        if contact_id is not None:
            contacts, contact_row = self.find("Contact", contact_id)
            account_row = contacts.raw(contact_row, "AccountId")
            if account_id is None and account_row is not None:
                account_id = self.tables["Account"].id_of(account_row)
            if account_id is None:
                raise RecordRejected(
                    RecordError("REQUIRED_FIELD_MISSING", "The contact has no account to convert into.", ())
                )
            self._stamp(contacts, contact_row, stamp, creating=False)
            self._mark_converted(leads, row, contact_row, account_id, stamp)
            return contacts.id_of(contact_row), account_id
        get = lambda name: leads.raw(row, name)  # noqa: E731
        owner = self.tables["User"].id_of(get("OwnerId") or 0)
        if account_id is None:
            _, account_row = self.create(
                "Account", {"Name": get("Company"), "OwnerId": owner}, system=True, stamp=stamp
            )
            account_id = self.tables["Account"].id_of(account_row)
        contact = {
            "FirstName": get("FirstName"),
            "LastName": get("LastName"),
            "Email": get("Email"),
            "Title": get("Title"),
            "Phone": get("Phone"),
            "MobilePhone": get("MobilePhone"),
            "MailingStreet": get("Street"),
            "MailingCity": get("City"),
            "MailingState": get("State"),
            "MailingPostalCode": get("PostalCode"),
            "MailingCountry": get("Country"),
            "LeadSource": get("LeadSource"),
            "HasOptedOutOfEmail": get("HasOptedOutOfEmail"),
            "Marketing_Score__c": get("Marketing_Score__c"),
            "AccountId": account_id,
            "OwnerId": owner,
        }
        contacts, contact_row = self.create("Contact", contact, system=True, stamp=stamp)
        self._mark_converted(leads, row, contact_row, account_id, stamp)
        return contacts.id_of(contact_row), account_id

    def _mark_converted(
        self, leads: Table, row: int, contact_row: int, account_id: str, stamp: int | None
    ) -> None:
        moment = stamp if stamp is not None else now_ms()
        leads.cols["IsConverted"][row] = True
        leads.cols["ConvertedContactId"][row] = contact_row
        leads.cols["ConvertedAccountId"][row] = self.tables["Account"].row_of(account_id)
        leads.cols["ConvertedDate"][row] = day(moment)
        leads.cols["Status"][row] = "Closed - Converted"
        self._stamp(leads, row, moment, creating=False)

    def log_write(
        self, *, method: str, obj: str, record_id: str | None, fields: dict[str, Any], api: str, success: bool
    ) -> None:
        self.writes.append(
            {
                "method": method,
                "object": obj,
                "id": record_id,
                "fields": {k: v for k, v in fields.items() if k != "attributes"},
                "api": api,
                "success": success,
                "time": format_datetime(now_ms()),
            }
        )
