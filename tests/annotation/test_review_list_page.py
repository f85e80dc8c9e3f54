"""The list view and the lead's view in a real headless Chromium: filters, keyboard, visible focus.

Screenshots are kept as test artifacts in ``test-results/screenshots/`` (the README's pictures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_record_list import corpus, review_some
from .test_review_page import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
FILTER_CONTROLS = ["certainty_min", "certainty_max", "predicted_label", "source", "model_version", "status",
                   "has_disagreement", "sort", "apply", "reset"]  # fmt: skip
# What the focused element is and whether its focus ring shows (an outline of 2 px or more).
FOCUSED = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  return {tag: el.tagName, id: el.id, text: (el.textContent || "").trim().slice(0, 40),
          href: el.getAttribute("href"),
          visible: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2};
}"""


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def tab_walk(page, until: str, steps: int = 120) -> list[dict[str, Any]]:
    """Press Tab from the top of the page until the element with id ``until`` has focus."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    seen = []
    for _ in range(steps):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        seen.append(focused)
        if focused["id"] == until:
            return seen
    raise AssertionError(f"#{until} never took the focus; focused: {[f['id'] or f['text'] for f in seen]}")


def sign_in(page, url: str, key: str) -> None:
    page.goto(f"{url}/review")
    page.fill("#api_key", key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/review")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_list_view_filters_pages_and_opens_records_by_keyboard(
    start_queue, queue_record, chromium_bin
) -> None:
    from playwright.sync_api import expect, sync_playwright

    queue = start_queue()
    assert (
        queue.call("POST", "/api/v1/records/bulk", json={"records": corpus(queue_record, 60)}).status_code
        == 200
    )
    done = review_some(queue)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, queue.url, queue.owner_key)
            page.get_by_role("link", name="Browse").click()
            expect(page.locator("#total")).to_have_text("60 records match; showing 1\u201350")

            # Every control and link takes the focus from the keyboard, and its focus ring shows.
            walked = tab_walk(page, until="next")
            ids = {f["id"] for f in walked}
            assert set(FILTER_CONTROLS) <= ids, ids
            record_links = [f for f in walked if (f["href"] or "").startswith("/review/records/")]
            assert len(record_links) == 50
            assert {"Review", "Browse", "Lead", "Sign out"} <= {f["text"] for f in walked}
            assert [f for f in walked if not f["visible"]] == []

            # The certainty range by keyboard (0.01 a step), two choices, then Enter on "Apply filters".
            page.focus("#certainty_max")
            for _ in range(20):
                page.keyboard.press("ArrowLeft")
            expect(page.locator("#certainty_max_out")).to_have_text("0.80")
            page.select_option("#source", "prediction")
            page.select_option("#status", "pending")
            page.focus("#apply")
            page.keyboard.press("Enter")
            page.wait_for_url("**certainty_max=0.8**")
            query = {"certainty_max": "0.8", "source": "prediction", "status": "pending", "limit": "1000"}
            expected = queue.call("GET", "/api/v1/records", params=query).json()
            shown = page.locator("#records tbody a:not(.lineage-link)").all_inner_texts()
            assert shown == [r["id"] for r in expected["records"]] and 0 < len(shown) < 50
            expect(page.locator("#total")).to_contain_text(f"{expected['total']} records match")
            expect(page.locator("#certainty_max_out")).to_have_text("0.80")  # the filters stay as chosen
            shot(page, "list-view.png")

            # Disagreeing records only, then open the first with Enter on its link.
            page.select_option("#has_disagreement", "true")
            page.select_option("#status", "")
            page.click("#apply")
            page.wait_for_url("**has_disagreement=true**")
            shown = page.locator("#records tbody a:not(.lineage-link)").all_inner_texts()
            assert set(shown) == {"req-4:0", "req-8:0", "req-10:0"}  # req-7:0 is a training-audit record
            assert set(shown) < done["disagreeing"]
            page.locator("#records tbody a").first.focus()
            page.keyboard.press("Enter")
            expect(page.locator("#record-id")).to_have_text(shown[0])
            expect(page.locator("#responses")).to_contain_text("reviewers disagree")
            expect(page.locator("#answer")).to_be_visible()  # still pending: the review form is there

            # A click on a row (not its link) opens it too; a completed record shows no form.
            page.goto(f"{queue.url}/review/records?status=completed")
            page.locator("#records tbody tr").first.locator("td").nth(3).click()
            expect(page.locator("#settled")).to_contain_text("completed")
            assert page.locator("#answer").count() == 0

            # Paging keeps the filters; a bad value in the address is a 400 naming the parameter.
            page.goto(f"{queue.url}/review/records?source=prediction&limit=20")
            page.click("#next")
            expect(page.locator("#total")).to_contain_text("showing 21\u201340")
            assert "source=prediction" in page.url
            # A choice by keyboard: arrow down on the focused sort picks the next sort; Enter applies it.
            page.goto(f"{queue.url}/review/records")
            page.focus("#sort")
            page.keyboard.press("ArrowDown")
            expect(page.locator("#sort")).to_have_value("highest_loss")
            page.focus("#apply")
            page.keyboard.press("Enter")
            page.wait_for_url("**sort=highest_loss**")
            expect(page.locator("#records tbody tr").first).to_contain_text("training-audit")
            answer = page.goto(f"{queue.url}/review/records?certainty_min=7")
            assert answer is not None and answer.status == 400
            expect(page.locator("#query-error")).to_contain_text("certainty_min")
        finally:
            browser.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_leads_view_for_owner_and_admin_not_annotators(start_queue, queue_record, chromium_bin) -> None:
    from playwright.sync_api import expect, sync_playwright

    queue = start_queue()
    queue.call("POST", "/api/v1/records/bulk", json={"records": corpus(queue_record)})
    done = review_some(queue)
    admin = queue.add_user("ada", "admin")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, queue.url, queue.owner_key)
            page.get_by_role("link", name="Lead").click()
            expect(page.locator("#disagreement-total")).to_have_text("4")
            links = page.locator("#disagreements tbody a").all_inner_texts()
            assert set(links) == done["disagreeing"]
            expect(page.locator("#annotators")).to_contain_text("ann")
            ann = page.locator("#annotators tbody tr", has_text="ann").locator("td").all_inner_texts()
            assert ann[:4] == ["ann", "8", "7", "1"]  # answers, labels, discards
            alpha = queue.call("GET", "/api/v1/agreement").json()["alpha"]
            expect(page.locator("#alpha")).to_have_text("undefined" if alpha is None else f"{alpha:.2f}")
            progress = page.locator("#progress tbody tr", has_text="training-audit").first
            expect(progress).to_be_visible()
            shot(page, "lead-view.png")

            # Keyboard: every link takes a visible focus; Enter on a disagreement opens that record.
            last = page.locator("#disagreements tbody a").last
            last.evaluate("el => el.id = 'last-disagreement'")
            walked = tab_walk(page, until="last-disagreement")
            assert [f for f in walked if not f["visible"]] == []
            assert len([f for f in walked if (f["href"] or "").startswith("/review/records/")]) == len(links)
            page.keyboard.press("Enter")
            expect(page.locator("#record-id")).to_have_text(links[-1])
            expect(page.locator("#responses")).to_contain_text("bob")

            admin_page = browser.new_page()
            sign_in(admin_page, queue.url, admin)
            assert admin_page.goto(f"{queue.url}/review/lead").status == 200

            annotator = browser.new_page()
            sign_in(annotator, queue.url, done["keys"]["ann"])
            expect(annotator.get_by_role("link", name="Browse")).to_be_visible()
            assert annotator.get_by_role("link", name="Lead").count() == 0
            refused = annotator.goto(f"{queue.url}/review/lead")
            assert refused is not None and refused.status == 403
            expect(annotator.locator("#problem")).to_contain_text("needs admin")
            # An annotator opening a pending record answers it without seeing the others' answers.
            annotator.goto(f"{queue.url}/review/records/req-4:0")
            expect(annotator.locator("#answer")).to_be_visible()
            assert annotator.locator("#responses").count() == 0
        finally:
            browser.close()
