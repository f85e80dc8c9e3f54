"""The lineage page in a real headless Chromium: reached by keyboard from the review flow and from the
list view, every part shown, focus visible. Its screenshot is ``test-results/screenshots/lineage.png``."""

from __future__ import annotations

import pytest

from .test_lineage import seed
from .test_review_list_page import FOCUSED, shot, sign_in, tab_walk
from .test_review_page import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_lineage_page_from_the_review_flow_and_the_list_view(start_queue, queue_record, chromium_bin) -> None:
    from playwright.sync_api import expect, sync_playwright

    queue = start_queue()
    keys = seed(queue, queue_record)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, queue.url, keys["bob"])  # an annotator reads lineages too

            # From the review flow: the record's Lineage link, by keyboard.
            page.goto(f"{queue.url}/review/records/req-1:0")
            walked = tab_walk(page, until="lineage-link")
            assert walked[-1]["visible"], walked[-1]
            page.keyboard.press("Enter")
            page.wait_for_url(f"{queue.url}/review/lineage/req-1%3A0")
            expect(page.locator("section.lineage")).to_have_count(1)

            # From the list view: each row's "trace" link; the puid's lineage holds both its records.
            page.goto(f"{queue.url}/review/records")
            link = page.get_by_role("link", name="Lineage of req-1:1")
            link.focus()
            assert page.evaluate(FOCUSED)["visible"]
            page.keyboard.press("Enter")
            page.wait_for_url(f"{queue.url}/review/lineage/req-1%3A1")

            page.goto(f"{queue.url}/review/lineage/req-1")
            expect(page.locator("#lineage-id")).to_have_text("req-1")
            sections = page.locator("section.lineage")
            expect(sections).to_have_count(2)
            first = sections.nth(0)
            expect(first.locator("table.features")).to_contain_text("Hours per week")
            expect(first.locator("table.features")).to_contain_text("value-1")  # decoded beside encoded
            expect(first.locator(".model-version")).to_have_text("v1")
            expect(first.locator(".explanation")).to_contain_text("AnchorTabular")
            expect(first.locator(".explanation")).to_contain_text("Marital Status = Separated")
            expect(first.locator("table.responses")).to_contain_text("capital gain")
            expect(first.locator(".consensus")).to_contain_text("completed as >50K")
            expect(first.locator(".feedback")).to_contain_text("pending · reward 0 · 0 attempts")
            expect(sections.nth(1).locator(".no-explanation")).to_be_visible()
            expect(sections.nth(1).locator(".feedback")).to_contain_text("None owed (no settled label)")

            # Keyboard: the record links take the focus with a visible ring (kept in the screenshot).
            walked = tab_walk(page, until="open-1")
            assert all(f["visible"] for f in walked), [f for f in walked if not f["visible"]]
            shot(page, "lineage.png")
            page.keyboard.press("Enter")
            page.wait_for_url(f"{queue.url}/review/records/req-1%3A0")

            missing = page.goto(f"{queue.url}/review/lineage/nope")
            assert missing is not None and missing.status == 404
            expect(page.locator("#problem")).to_contain_text("'nope'")
        finally:
            browser.close()
