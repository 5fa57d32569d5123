"""The HTML packet in headless Chromium: rate items, reload (progress kept), save, import the download."""

from __future__ import annotations

import shutil
import time

import polars as pl
import pytest
from test_annotate_packet import write_rationales

from rationale_sft.annotate.packet import ID_MAP, export_packet
from rationale_sft.annotate.ratings import import_ratings
from rationale_sft.config import build
from rationale_sft.config.annotate import ExportConfig, ImportConfig
from rationale_sft.rundir import read_json

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")


@pytest.fixture()
def browser(tmp_path):
    if not CHROMEDRIVER:
        pytest.skip("chromedriver is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver, downloads
    driver.quit()


def _wait_for_file(folder, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.suffix == ".json"]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no download in {folder}: {list(folder.iterdir())}")


def _wait_text(driver, element_id: str, text: str, timeout: float = 20) -> None:
    """Wait until the element shows ``text`` (the page's script may still be running after a reload)."""
    from selenium.common.exceptions import NoSuchElementException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shows(d):
        try:
            return d.find_element(By.ID, element_id).text == text
        except NoSuchElementException:
            return False

    try:
        WebDriverWait(driver, timeout).until(shows)
    except TimeoutException:
        checked = driver.execute_script("return document.querySelectorAll('input:checked').length")
        store = driver.execute_script("return JSON.stringify(localStorage)")
        raise AssertionError(f"#{element_id} shows {driver.find_element(By.ID, element_id).text!r}, "
                             f"expected {text!r}; {checked} radios checked; storage {store}") from None


@pytest.mark.slow
def test_rate_reload_save_and_import(browser, tmp_path):
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    rationales, examples = write_rationales(tmp_path)
    page = export_packet(build(ExportConfig, {"n": 3, "seed": 1}), rationales, examples, tmp_path / "packet")
    driver.get(page.as_uri())
    _wait_text(driver, "status", "0 of 3 rated")
    scores = {"R001": (5, 4, 3), "R002": (2, 2, 1)}
    for item, values in scores.items():
        for crit, s in zip(("accuracy", "grounding", "relevance"), values):
            driver.find_element(By.ID, f"{item}-{crit}-{s}").click()
    driver.find_element(By.ID, "R002-comment").send_keys("misquotes the BMI")
    driver.find_element(By.ID, "save").click()
    assert driver.find_element(By.ID, "error").text == "Enter your name first."
    driver.find_element(By.ID, "rater").send_keys("Dr Ada")

    _wait_text(driver, "status", "2 of 3 rated")
    driver.refresh()  # progress survives a reload (localStorage)
    _wait_text(driver, "status", "2 of 3 rated")
    assert driver.find_element(By.ID, "R001-accuracy-5").is_selected()
    assert driver.find_element(By.ID, "rater").get_attribute("value") == "Dr Ada"
    driver.find_element(By.ID, "save").click()

    saved = _wait_for_file(downloads)
    data = read_json(saved)
    assert data["rater"] == "Dr Ada" and data["packet_id"] == read_json(tmp_path / "packet" / ID_MAP)["packet_id"]
    assert {r["item_id"]: (r["accuracy"], r["grounding"], r["relevance"]) for r in data["ratings"]} == scores
    import_ratings(build(ImportConfig, {}), tmp_path / "packet", [saved], tmp_path / "imported")
    summary = read_json(tmp_path / "imported" / "agreement.json")
    assert summary["raters"] == ["Dr Ada"] and summary["n_items"] == 2
    assert summary["criteria"]["accuracy"]["mean"] == pytest.approx(3.5)
    assert summary["criteria"]["relevance"]["mean"] == pytest.approx(2.0)
    ratings = pl.read_parquet(tmp_path / "imported" / "ratings.parquet")
    assert ratings.filter(pl.col("item_id") == "R002")["comment"].item() == "misquotes the BMI"
