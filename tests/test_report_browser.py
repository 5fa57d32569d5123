"""The report's HTML in headless Chromium: it renders, every image loads, the main table lists the arms."""

import json
import shutil
from pathlib import Path

import pytest

from rationale_sft.config import build
from rationale_sft.config.report import ReportConfig
from rationale_sft.report import write_report
from test_report_build import make_grid_run

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs Debian chromium and chromedriver (CI installs them)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def _open(driver, html: Path):
    driver.get(html.resolve().as_uri())
    driver.execute_script("return Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")


@pytest.mark.slow
def test_report_renders_with_all_images_and_arms(browser, tmp_path):
    from selenium.webdriver.common.by import By

    root = make_grid_run(tmp_path / "grid")
    html = write_report(build(ReportConfig, {"n_boot": 200}), root)
    _open(browser, html)
    assert "report" in browser.title
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 6
    broken = [i.get_attribute("src") for i in images
              if not browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)]
    assert broken == []
    main = browser.find_element(By.CSS_SELECTOR, "section#main table")
    first_col = [r.find_elements(By.TAG_NAME, "td")[0].text for r in main.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert first_col[:3] == ["label_only", "freeform", "stepwise"]
    assert "reproduces" in browser.find_element(By.CSS_SELECTOR, ".verdict").text
    sections = [s.get_attribute("id") for s in browser.find_elements(By.TAG_NAME, "section")]
    assert sections[:4] == ["verdict", "gates", "main", "delta"] and "quality" in sections


COLUMN_OVERFLOW = """
const style = getComputedStyle(document.body);
const right = document.body.getBoundingClientRect().right - parseFloat(style.paddingRight);
return Array.from(document.querySelectorAll('div.table')).map(box => [box.closest('section').id,
    box.getBoundingClientRect().right - right, box.scrollWidth - box.clientWidth]);
"""


@pytest.mark.slow
def test_tables_stay_in_the_text_column(browser, tmp_path):
    root = make_grid_run(tmp_path / "grid")
    quality = root / "shared/rationales-1/quality.json"  # the set names and keys of a real teacher's report
    report = json.loads(quality.read_text())
    for group in report["groups"]:
        group.update({"set": f"knowledge/knowledge/{group['style']}/conditioned", "backend": "knowledge",
                      "claims_by_kind": {"measurement:grounded": 7480, "diagnosis:grounded": 1317}})
    quality.write_text(json.dumps(report))
    _open(browser, write_report(build(ReportConfig, {"n_boot": 200}), root))
    browser.set_window_size(760, 900)
    boxes = browser.execute_script(COLUMN_OVERFLOW)
    assert len(boxes) >= 10 and all(edge <= 0.5 for _, edge, _ in boxes), boxes
    assert [over for section, _, over in boxes if section == "quality"] == [0]  # fits: long names wrap


@pytest.mark.slow
def test_report_without_optional_parts_renders_absent_notes(browser, tmp_path):
    from selenium.webdriver.common.by import By

    root = make_grid_run(tmp_path / "bare", fewshot=False, extras=False)
    _open(browser, write_report(build(ReportConfig, {"n_boot": 200}), root))
    notes = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".absent")]
    assert any("few-shot" in n for n in notes) and any("baselines" in n.lower() for n in notes)
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0
               for i in browser.find_elements(By.TAG_NAME, "img"))


@pytest.mark.slow
def test_mechanism_section_renders_its_figures(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from test_report_mechanism import ARMS, add_mechanism_files

    root = add_mechanism_files(make_grid_run(tmp_path / "mech", fewshot=False, scales=(400,), arms=ARMS))
    _open(browser, write_report(build(ReportConfig, {"n_boot": 200}), root))
    section = browser.find_element(By.CSS_SELECTOR, "section#mechanism")
    images = section.find_elements(By.TAG_NAME, "img")
    assert len(images) == 3 and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    assert "This run supports" in section.find_element(By.CSS_SELECTOR, ".verdict").text
    rows = section.find_elements(By.CSS_SELECTOR, "table")[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert {r.find_elements(By.TAG_NAME, "td")[0].text for r in rows} >= {"segment_norm", "flipped_rationale"}
