"""The review page in a real headless Chromium (Debian's, driven by Playwright): label two records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ANCHOR = {
    "anchor": ["Marital Status = Separated", "Capital Gain <= 0.00"],
    "precision": 0.97,
    "coverage": 0.12,
}


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_annotator_labels_two_records_with_a_button_and_a_key(
    start_queue, queue_record, chromium_bin: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    queue = start_queue()
    records = [queue_record(2), queue_record(1, explanation=ANCHOR), queue_record(3)]
    assert queue.call("POST", "/api/v1/records/bulk", json={"records": records}).json()["created"] == 3
    key = queue.add_user("ann", "annotator")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{queue.url}/review")
            page.fill("#api_key", "gbq_wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator(".error")).to_contain_text("unknown API key")
            page.fill("#api_key", key)
            page.get_by_role("button", name="Sign in").click()

            # Least certain first: req-1 (0.51), with its anchor, features and probabilities.
            expect(page.locator("#record-id")).to_have_text("req-1:0")
            expect(page.locator("#remaining")).to_have_text("3 left")
            expect(page.locator("#anchor")).to_contain_text("Marital Status = Separated")
            expect(page.locator("#features")).to_contain_text("Hours per week")
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            if os.environ.get("GLASSBOX_SCREENSHOT_DIR"):
                page.screenshot(
                    path=str(Path(os.environ["GLASSBOX_SCREENSHOT_DIR"]) / "review.png"), full_page=True
                )

            page.click("#answer button[data-key='2']")  # a button: ">50K"
            expect(page.locator("#record-id")).to_have_text("req-2:0")
            expect(page.locator("#remaining")).to_have_text("2 left")
            expect(page.locator(".message")).to_contain_text("req-1:0 labelled >50K")

            page.keyboard.press("1")  # a key: "<=50K"
            expect(page.locator("#record-id")).to_have_text("req-3:0")
            expect(page.locator("#remaining")).to_have_text("1 left")
        finally:
            browser.close()

    first = queue.call("GET", "/api/v1/records/req-1:0").json()
    second = queue.call("GET", "/api/v1/records/req-2:0").json()
    assert [(r["user_name"], r["label"]) for r in first["responses"]] == [("ann", ">50K")]
    assert [(r["user_name"], r["label"]) for r in second["responses"]] == [("ann", "<=50K")]
    assert (first["status"], first["final_label"], second["final_label"]) == ("completed", ">50K", "<=50K")
    assert queue.call("GET", "/api/v1/records/req-3:0").json()["responses"] == []
