"""The admin console in a real headless Chromium against a served mapping API, the real
PostgreSQL and Kafka and the Salesforce emulator (the pusher and puller running where a screen
needs them). Each test saves a screenshot of its screen to .local/artifacts/console/."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect

from crmsync.common.settings import CommonSettings
from crmsync.puller.bootstrap import bootstrap as puller_bootstrap
from tests.integration.test_mapping_api_deliveries import pusher_giving_up_fast
from tests.integration.test_puller_sync import puller_settings
from tests.support.browser import NARROW, browser, screenshot, served_api, sign_in
from tests.support.connections import add_connection
from tests.support.emulator import CrmOrg
from tests.support.mapping_api import Tenant, new_tenant
from tests.support.pusher import event, publish, running_pusher, seed_from_crm, wait_logged

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Console:
    base_url: str
    tenant: Tenant
    org: CrmOrg

    def key(self, role: str = "admin") -> str:
        return getattr(self.tenant, role)["Authorization"].removeprefix("Bearer ")


@pytest.fixture
async def console(sessions, settings: CommonSettings, engine, crm_org: CrmOrg) -> AsyncIterator[Console]:
    """A fresh account connected to a fresh org, with three of its leads stored, and the API served."""
    tenant = await new_tenant(sessions, name="Console Co")
    async with sessions.begin() as session:
        add_connection(
            session, settings=settings, account_id=tenant.account_id, org=crm_org, status="connected"
        )
    for lead in crm_org.records("Lead", limit=3):
        await seed_from_crm(
            sessions, account_id=tenant.account_id, org=crm_org, crm_object="Lead", record_id=lead["Id"]
        )
    async with served_api(settings, engine=engine) as base_url:
        yield Console(base_url, tenant, crm_org)


def row(page: Page, destination: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-destination="{destination}"]')


async def test_sign_in_change_a_row_and_see_the_preview(console: Console) -> None:
    async with browser(console.base_url) as context:
        page = await context.new_page()
        await sign_in(page, console.key())
        await expect(page.get_by_role("heading", name="Contact Mapping")).to_be_visible()
        job_title = row(page, "job_title")
        # The lead's full name is read-only in the CRM, so the field stops pushing (R4).
        await job_title.get_by_label("Lead source of Job Title").select_option("Name")
        await job_title.get_by_label("Allow Push of Job Title").select_option("off")
        await page.get_by_role("button", name="Preview").click()
        preview = page.locator("#preview")
        await expect(preview).to_be_visible()
        await expect(preview).to_contain_text("job_title: lead source Title → Name")
        impact = page.locator("#impacts tr", has_text="job_title")
        await expect(impact).to_contain_text("changed")
        # Three stored leads hold a Job Title, which the re-read replaces.
        cells = await impact.locator("td").all_inner_texts()
        assert cells[:4] == ["changed", "0", "3", "0"], cells
        await expect(page.locator("#full-sync")).to_contain_text("A full sync runs")
        await expect(page.locator("#full-sync")).to_contain_text("Lead.Name")
        await expect(page.get_by_text("No rule is broken")).to_be_visible()
        await screenshot(page, "mapping-preview")


async def test_a_mapping_without_a_score_field_is_refused_on_the_row(console: Console) -> None:
    async with browser(console.base_url) as context:
        page = await context.new_page()
        await sign_in(page, console.key())
        score = row(page, "score")
        await score.get_by_label("Lead source of Primary Score").select_option("")
        await score.get_by_label("Contact source of Primary Score").select_option("")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("alert").first).to_contain_text("Not saved")
        refusal = page.locator('tr[data-destination="score"] + tr.row-errors')
        await expect(refusal).to_contain_text("R3")
        await expect(refusal).to_contain_text("at least one field of type Score")
        await expect(page.locator("hgroup p")).to_contain_text("Version 1")
        await screenshot(page, "mapping-refused")


async def test_allow_push_off_keeps_a_form_event_local(console: Console, settings, sessions) -> None:
    lead = console.org.records("Lead", limit=1)[0]
    async with browser(console.base_url) as context:
        page = await context.new_page()
        await sign_in(page, console.key())
        await row(page, "job_title").get_by_label("Allow Push of Job Title").select_option("off")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("status").first).to_contain_text("Saved as version 2")
        await expect(row(page, "job_title").get_by_label("Allow Push of Job Title")).to_have_value("off")
        await screenshot(page, "mapping-allow-push-off")
        change = event(
            console.tenant.account_id, external_id=lead["Id"], changes={"job_title": "Stays Local"}
        )
        async with running_pusher(settings):
            await publish(settings, [change])
            logged = await wait_logged(
                sessions, account_id=console.tenant.account_id, event_ids=[change.event_id]
            )
        assert logged[change.event_id].decisions == {"job_title": "allow_push_off"}
        assert console.org.get("Lead", lead["Id"])["Title"] == lead["Title"]
        # The contact page shows the value kept locally, from the form, and the push that did not go.
        await page.get_by_role("link", name="All Contacts").click()
        await page.get_by_label("Search name, e-mail or company").fill(lead["Email"])
        await page.keyboard.press("Enter")
        await page.locator("#contacts tbody a").click()
        job_title = page.locator("#fields tr", has_text="job_title")
        await expect(job_title).to_contain_text("Stays Local")
        await expect(job_title).to_contain_text("form")
        await expect(page.locator("#pushes")).to_contain_text("job_title: allow_push_off")
        await screenshot(page, "contact-push-kept-local")


async def test_sync_now_shows_the_run_until_it_finishes(console: Console, settings, engine) -> None:
    puller = puller_bootstrap(
        puller_settings(settings, puller_group_id=f"puller-{uuid.uuid4().hex[:8]}", puller_poll_s=0.3),
        engine=engine,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(puller.main(stop))
    try:
        async with browser(console.base_url) as context:
            page = await context.new_page()
            await sign_in(page, console.key())
            await page.get_by_role("link", name="Sync Schedule").click()
            await expect(page.locator("#automatic-why")).to_contain_text("Automatic chose every")
            await page.get_by_role("button", name="Sync Now").click()
            await expect(page.locator("#run-state")).to_be_visible()
            # The fragment is polled until the run is over; no reload.
            await expect(page.locator("#run-state")).to_contain_text("sync succeeded", timeout=90_000)
            await expect(page.locator("#progress")).to_have_attribute("data-live", "no")
            await screenshot(page, "schedule-sync-finished")
            # A reload shows what the run changed: the contacts stored, the last full sync.
            await page.reload()
            await expect(page.locator("#automatic-why")).to_contain_text("(100 contacts stored)")
            await expect(page.get_by_text("last successful one: —")).to_have_count(0)
            await screenshot(page, "schedule-after-sync")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_search_a_contact_and_open_it(console: Console) -> None:
    lead = console.org.records("Lead", limit=1)[0]
    async with browser(console.base_url) as context:
        page = await context.new_page()
        await sign_in(page, console.key())
        await page.get_by_role("link", name="All Contacts").click()
        await expect(page.get_by_role("link", name="All Salesforce Leads 3")).to_be_visible()
        await page.get_by_label("Search name, e-mail or company").fill(lead["Email"])
        await page.keyboard.press("Enter")
        results = page.locator("#contacts tbody tr")
        await expect(results).to_have_count(1)
        await screenshot(page, "contacts-search")
        await results.get_by_role("link").click()
        fields = page.locator("#fields")
        await expect(fields.locator("tr", has_text="email")).to_contain_text(lead["Email"])
        await expect(fields.locator("tr", has_text="job_title")).to_contain_text("crm")
        await expect(page.locator("#pushes")).to_contain_text("Nothing was pushed")
        await screenshot(page, "contact")


async def test_a_reader_finds_no_enabled_save_and_a_forged_post_is_refused(console: Console) -> None:
    async with browser(console.base_url, viewport=NARROW) as context:
        page = await context.new_page()
        await sign_in(page, console.key("reader"))
        await expect(page.get_by_text("Read-only: a reader key")).to_be_visible()
        save = page.get_by_role("button", name="Save", exact=True)
        await expect(save).to_be_disabled()
        for button in await page.get_by_role("button").all():
            if (await button.inner_text()).strip() != "Sign out":
                await expect(button).to_be_disabled()
        await screenshot(page, "mapping-reader-narrow")
        # The browser's own session, but no or a wrong token: refused before anything runs.
        for data in ({"action": "save"}, {"action": "save", "csrf_token": "forged"}):
            response = await page.request.post("/console/mapping", form=data, max_redirects=0)
            assert response.status == 403
        token = await page.locator('input[name="csrf_token"]').first.input_value()
        response = await page.request.post(
            "/console/schedule/sync-now", form={"csrf_token": token}, max_redirects=0
        )
        assert response.status == 403  # a reader changes nothing (R21)


async def test_connection_entities_and_sync_health(console: Console) -> None:
    async with browser(console.base_url) as context:
        page = await context.new_page()
        await sign_in(page, console.key())
        await page.get_by_role("link", name="Connection").click()
        await page.get_by_role("button", name="Test the connection").click()
        await expect(page.locator("#connection-status")).to_have_text("connected")
        await expect(page.locator("meter#budget")).to_be_visible()
        await expect(page.get_by_text("kept in reserve")).to_be_visible()
        await screenshot(page, "connection")
        await page.get_by_role("link", name="CRM Entities").click()
        await page.locator("#entities a.bubble").first.click()
        await page.get_by_label("Field").select_option("Industry")
        await page.get_by_role("button", name="Show sample values").click()
        await expect(page.locator("#samples li").first).to_be_visible()
        await screenshot(page, "entity-samples")
        await page.get_by_role("link", name="Sync Health").click()
        await expect(page.get_by_role("heading", name="Pushes failed")).to_be_visible()
        await expect(page.locator("#dead-letters")).to_be_visible()
        await screenshot(page, "sync-health")


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
  .map(e => e.outerHTML.slice(0, 120))"""


async def test_the_console_is_usable_by_keyboard_with_labelled_controls(console: Console) -> None:
    async with browser(console.base_url) as context:
        page = await context.new_page()
        await sign_in(page, console.key())
        for path in ("/console/mapping", "/console/schedule", "/console/contacts", "/console/connection"):
            await page.goto(path)
            assert await page.evaluate(UNLABELLED) == [], path
        await page.goto("/console/mapping")
        await page.keyboard.press("Tab")
        await expect(page.locator(":focus")).to_have_text("Skip to content")
        for _ in range(10):
            await page.keyboard.press("Tab")
            if (await page.locator(":focus").inner_text()) == "Sync Schedule":
                break
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/console/schedule")
        await page.get_by_label("Hourly").focus()
        await page.keyboard.press("Space")
        await expect(page.get_by_label("Hourly")).to_be_checked()
        await screenshot(page, "schedule-keyboard", full_page=False)


async def test_sync_health_retry_all_sends_a_failed_push_once_the_crm_takes_writes_again(
    console: Console, settings, sessions
) -> None:
    lead = console.org.records("Lead", limit=1)[0]
    account_id = console.tenant.account_id
    change = event(account_id, external_id=lead["Id"], changes={"job_title": "Retried From Health"})
    console.org.faults("503", rate=1.0, path="composite")
    async with pusher_giving_up_fast(settings):
        await publish(settings, [change])
        await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id], status="failed")
        async with browser(console.base_url) as context:
            page = await context.new_page()
            await sign_in(page, console.key())
            await page.get_by_role("link", name="Sync Health").click()
            await expect(page.locator("#count-failed")).to_have_text("1")
            await expect(page.locator("#codes-failed")).to_contain_text("SERVER_UNAVAILABLE")
            await expect(page.locator("#pushes-failed")).to_contain_text(lead["Id"])
            console.org.clear_faults()  # the CRM takes writes again
            await page.get_by_role("button", name="Retry all failed").click()
            await expect(page.locator("#done")).to_contain_text("1 failed push put back in line")
            logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
            assert logged[change.event_id].status == "succeeded"
            await page.reload()
            await expect(page.locator("#count-failed")).to_have_text("0")
            await expect(page.locator("#push-log")).to_contain_text("succeeded")
            await screenshot(page, "sync-health-retried")
    assert console.org.get("Lead", lead["Id"])["Title"] == "Retried From Health"
