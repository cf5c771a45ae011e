"""``chaos serve`` in a real headless browser (Debian's Chromium through ChromeDriver): the index
lists every run with its verdict, workload, nemesis and time, and links its page and files."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chaos import report, store
from chaos.runner import Recorder, TestConfig
from chaos.workloads import make_workload

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _run(root: Path, workload: str, nemesis: str, valid: object, crashed: str | None = None) -> Path:
    run = store.new_run_dir(root, f"{workload}-{nemesis}")
    store.write_json(run / store.TEST, TestConfig(workload=workload, nemesis=nemesis, seed=3).to_dict())
    clock = iter(range(0, 10**12, 10**8))
    rec = Recorder(clock_ns=lambda: next(clock))
    for op in [("invoke", 0, "add", 1), ("ok", 0, "add", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 1)]:
        rec.record(*op)
    store.write_history(run, rec.ops, make_workload("counter").header())
    results = {"valid": valid, "ops": {"invokes": 2}, "checkers": {"counter": {"valid": valid, "summary": "valid (1 reads)"}}}
    if crashed:
        results["crashed"] = crashed
    store.write_json(run / store.RESULTS, results)
    report.write_report(run, rec.ops, title=run.name)
    (run / "nodes").mkdir()
    (run / "nodes" / "n1.log").write_text("n1 became leader at term 1\n")
    return run


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "store"
    runs = [_run(root, "counter", "none", True), _run(root, "register", "partition", False),
            _run(root, "counter", "kill", "unknown", crashed="interrupted")]
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "serve", "--store", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        yield line.split(" on ", 1)[1].split()[0].rstrip("/"), runs
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_index_lists_every_run_and_links_its_files(served, browser):
    from selenium.webdriver.common.by import By

    url, runs = served
    browser.get(url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.run")
    assert len(rows) == 3
    seen = {(r.find_element(By.CSS_SELECTOR, "td.workload").text, r.find_element(By.CSS_SELECTOR, "td.nemesis").text,
             r.find_element(By.CSS_SELECTOR, ".verdict").text) for r in rows}
    assert seen == {("counter", "none", "VALID"), ("register", "partition", "INVALID"), ("counter", "kill", "INTERRUPTED")}
    assert all(" UTC" in r.find_element(By.TAG_NAME, "a").text for r in rows)

    row = next(r for r in rows if r.find_element(By.CSS_SELECTOR, ".verdict").text == "INVALID")
    row.find_element(By.TAG_NAME, "a").click()  # the run's page
    assert "register-partition" in browser.find_element(By.TAG_NAME, "h1").text
    assert "counter: valid (1 reads)" in browser.find_element(By.TAG_NAME, "pre").text
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 3 and all(browser.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images)
    browser.find_element(By.LINK_TEXT, "nodes/n1.log").click()
    assert "became leader" in browser.find_element(By.TAG_NAME, "body").text
    browser.back()
    browser.find_element(By.LINK_TEXT, "timeline.html").click()
    assert "process 0" in browser.page_source and "process 1" in browser.page_source
    browser.get(url + "/")
    browser.find_element(By.LINK_TEXT, "results.json").click()
    assert json.loads(browser.find_element(By.TAG_NAME, "body").text)["ops"]["invokes"] == 2


def test_only_files_inside_the_store_are_served(served):
    url, runs = served
    run = runs[0]
    base = f"{url}/files/{run.parent.name}/{run.name}"
    with urllib.request.urlopen(base + "/history.jsonl", timeout=10) as r:
        assert r.read().startswith(b'{"raftwork_history":1')
    for bad in (base + "/../../../etc/passwd", base + "/%2e%2e/%2e%2e/test.json", f"{url}/files/x/y/test.json",
                f"{url}/runs/nope/nope/"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=10)
        assert info.value.code == 404, bad
